// kryten-llm dashboard: renders the snapshots pushed on /api/stream (server-sent events).
// Every piece of chat text is inserted with textContent, never as HTML.
"use strict";

const SERIES = [
  ["events", "#58a6ff"],
  ["chat", "#a371f7"],
  ["triggered", "#d29922"],
  ["answered", "#3fb950"],
];
const $ = (id) => document.getElementById(id);
let lastState = null;

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h ? `${h}h ${m}m` : m ? `${m}m ${r}s` : `${r}s`;
}

function clock(seconds) {
  const s = Math.floor(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

function renderHeader(state) {
  const svc = state.service;
  $("version").textContent = `${svc.name} ${svc.version}`;
  const badge = $("status");
  badge.dataset.status = state.health.status;
  badge.textContent = state.health.status;
  const flags = $("flags");
  flags.replaceChildren();
  if (svc.paused) flags.append(el("span", "paused"));
  if (svc.dry_run) flags.append(el("span", "dry-run"));
  flags.append(el("span", `personality: ${svc.personality}`, "muted"));
  // Several instances (issue 15): which one this is and every instance it sees.
  const cluster = state.health.components.cluster || {};
  if (cluster.instance_id && cluster.mode !== "disabled") {
    const others = (cluster.instances || []).filter((id) => id !== cluster.instance_id);
    const text = `instance ${cluster.instance_id} (${cluster.mode})` +
      (others.length ? ` · peers: ${others.join(", ")}` : " · alone");
    const span = el("span", text, "muted");
    span.id = "instances";
    flags.append(span);
  }
}

function renderCounters(state) {
  $("c-events").textContent = state.counters.events;
  $("c-chat").textContent = state.counters.chat;
  $("c-triggered").textContent = state.counters.triggered;
  $("c-answered").textContent = state.counters.decision_answered;
  $("c-queue").textContent = `${state.queue.depth}/${state.queue.capacity}`;
  $("c-uptime").textContent = duration(state.service.uptime_seconds);
}

function renderChart(series) {
  const canvas = $("rates");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 900, height = canvas.clientHeight || 220;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, width, height);
  const pad = { left: 44, right: 8, top: 8, bottom: 18 };
  const plotW = width - pad.left - pad.right, plotH = height - pad.top - pad.bottom;
  let max = 1;
  for (const point of series) for (const [name] of SERIES) max = Math.max(max, point[name] || 0);
  ctx.strokeStyle = "#2c3038";
  ctx.fillStyle = "#8a919c";
  ctx.font = "11px system-ui, sans-serif";
  for (let i = 0; i <= 4; i++) {
    const y = pad.top + plotH - (plotH * i) / 4;
    ctx.beginPath();
    ctx.moveTo(pad.left, y);
    ctx.lineTo(width - pad.right, y);
    ctx.stroke();
    ctx.fillText(((max * i) / 4).toFixed(max < 4 ? 1 : 0), 4, y + 4);
  }
  const capacity = 300;
  const x = (i) => pad.left + plotW * ((capacity - series.length + i) / (capacity - 1));
  for (const [name, color] of SERIES) {
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    series.forEach((point, i) => {
      const y = pad.top + plotH - (plotH * (point[name] || 0)) / max;
      if (i === 0) ctx.moveTo(x(i), y);
      else ctx.lineTo(x(i), y);
    });
    ctx.stroke();
  }
  canvas.dataset.points = String(series.length);
  const last = series[series.length - 1] || {};
  canvas.dataset.last = SERIES.map(([name]) => `${name}=${last[name] || 0}`).join(" ");
}

function renderLegend() {
  const legend = $("legend");
  for (const [name, color] of SERIES) {
    const item = el("span", name);
    const swatch = el("i");
    swatch.style.background = color;
    item.prepend(swatch);
    legend.append(item);
  }
}

function renderBars(id, counts) {
  const box = $(id);
  box.replaceChildren();
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  const max = Math.max(1, ...entries.map(([, n]) => n));
  if (!entries.length) box.append(el("div", "none yet", "muted"));
  for (const [name, n] of entries) {
    const row = el("div", null, "row");
    row.dataset.name = name;
    const bar = el("div", null, "bar");
    bar.style.width = `${(100 * n) / max}%`;
    const track = el("div");
    track.append(bar);
    row.append(el("div", name), track, el("div", n, "num"));
    box.append(row);
  }
}

function renderHealth(state) {
  const list = $("reasons");
  list.replaceChildren();
  if (!state.health.reasons.length) list.append(el("li", "all good", "muted"));
  for (const reason of state.health.reasons) list.append(el("li", reason));
  const box = $("channels");
  box.replaceChildren();
  for (const channel of state.channels) {
    const p = el("p");
    p.append(
      el("strong", channel.channel),
      el("span", ` · as ${channel.personality} · ${channel.users} users · `, "muted"),
    );
    if (channel.video) {
      const v = channel.video;
      p.append(el("span", `▶ ${v.title}`), el("span", ` ${clock(v.position_seconds)} / ${v.duration}${v.paused ? " (paused)" : ""}`, "muted"));
    } else {
      p.append(el("span", "nothing playing", "muted"));
    }
    box.append(p);
  }
}

function renderProviders(providers) {
  const body = $("providers").tBodies[0];
  body.replaceChildren();
  for (const [name, p] of Object.entries(providers)) {
    const tr = el("tr");
    tr.dataset.provider = name;
    tr.append(
      el("td", name + (p.in_chain ? "" : " (not in chain)")),
      el("td", p.model),
      el("td", p.state.replace("_", " ") + (p.retry_in ? ` (${Math.ceil(p.retry_in)}s)` : ""), `state-${p.state}`),
      el("td", p.latency_ms === null ? "–" : `${Math.round(p.latency_ms)} ms`),
      el("td", `${Math.round(p.error_rate * 100)}%`),
      el("td", p.calls),
      el("td", p.last_error || "", "text"),
    );
    body.append(tr);
  }
}

function renderRecent(recent) {
  const body = $("recent").tBodies[0];
  body.replaceChildren();
  for (const r of recent) {
    const tr = el("tr");
    tr.append(
      el("td", new Date(r.time * 1000).toLocaleTimeString()),
      el("td", r.channel),
      el("td", r.username),
      el("td", r.text, "text"),
      el("td", r.trigger),
      el("td", r.reason, r.answered ? "state-closed" : ""),
      el("td", r.provider || ""),
      el("td", r.reply, "text"),
      el("td", r.total_ms === null || r.total_ms === undefined ? "" : Math.round(r.total_ms)),
    );
    body.append(tr);
  }
}

function percent(value) {
  return value === null || value === undefined ? "–" : `${Math.round(value * 100)}%`;
}

function renderExplore(runs, pools) {
  const body = $("explore").tBodies[0];
  body.replaceChildren();
  if (!runs.length) {
    const tr = el("tr");
    const td = el("td", "no explore run is announcing itself", "muted");
    td.colSpan = 7;
    tr.append(td);
    body.append(tr);
  }
  for (const run of runs) {
    const tr = el("tr");
    tr.dataset.run = run.run;
    const providers = Object.entries(run.providers || {})
      .map(([name, p]) => `${name} ${(p || {}).new ?? 0}/${(p || {}).received ?? 0}`)
      .join(", ");
    const stop = el("button", "stop");
    stop.type = "button";
    stop.className = "explore-stop";
    stop.disabled = Boolean(run.final);
    stop.addEventListener("click", () => control("explore_stop", run.run));
    const stopCell = el("td");
    stopCell.append(stop);
    tr.append(
      el("td", run.topic, "text"),
      el("td", run.target ? `${run.items} / ${run.target}` : run.items),
      el("td", percent(run.duplicate_rate)),
      el("td", percent(run.recent_yield)),
      el("td", providers, "text"),
      el("td", run.final ? `finished (${run.stop_reason})` : run.state),
      stopCell,
    );
    body.append(tr);
  }
  const entries = Object.entries(pools || {});
  $("pools").textContent = entries.length
    ? "fallback pools: " + entries.map(([name, n]) => `${name} (${n} lines)`).join(", ")
    : "no fallback pool has lines yet (kryten-llm explore --for-trigger NAME or --for-personality)";
}

function renderControls(state) {
  const enabled = state.service.controls_enabled;
  $("controls-off").hidden = enabled;
  $("controls-on").hidden = !enabled;
  const select = $("personality");
  const names = state.service.personalities;
  if (select.options.length !== names.length) {
    select.replaceChildren(...names.map((n) => el("option", n)));
  }
  if (document.activeElement !== select) select.value = state.service.personality;
}

// The last reload or runtime change: refused (every error with its key path) or needing a
// restart for some settings. Text only: paths and messages come from the config file.
function renderConfig(config) {
  const banner = $("config-banner");
  const restart = config && config.ok ? config.restart_needed || [] : [];
  if (!config || (config.ok && !restart.length)) {
    banner.hidden = true;
    return;
  }
  banner.hidden = false;
  banner.dataset.kind = config.ok ? "restart" : "error";
  const head = `config ${config.action} by ${config.by} at ${config.at}`;
  banner.textContent = config.ok
    ? `${head}: applied; restart needed for ${restart.join(", ")}`
    : `${head} refused, nothing changed:\n` +
      config.errors.map((e) => `${e.path}: ${e.problem} (${e.fix})`).join("\n");
}

// conv14: the bot's share of chat against its budget, and the engagement figures per hour
function sharePercent(value) {
  return value === null || value === undefined ? "–" : `${(value * 100).toFixed(1)}%`;
}

function renderEngagement(engagement) {
  const body = $("engagement").querySelector("tbody");
  body.replaceChildren();
  if (!engagement) return;
  const shares = Object.entries(engagement.share)
    .map(([channel, share]) => `${channel} ${sharePercent(share)}`)
    .join(", ");
  $("share").textContent =
    `share of chat: ${shares || "nothing said yet"} (budget ${sharePercent(engagement.budget)}); ` +
    `replies this hour: ${engagement.replies_this_hour}`;
  const list = (counts) =>
    Object.entries(counts).map(([name, n]) => `${name} ${n}`).join(", ") || "–";
  for (const hour of engagement.hours.slice().reverse()) {
    const row = el("tr");
    row.append(
      el("td", hour.hour),
      el("td", hour.replies, "num"),
      el("td", sharePercent(hour.share), "num"),
      el("td", list(hour.activations)),
      el("td", list(hour.refusals)),
      el("td", hour.first_part_ms_p50 === null ? "–" : `${hour.first_part_ms_p50} ms`, "num"),
    );
    body.append(row);
  }
}

// Runtime tuning (issue 13): each channel's character and trigger words, the provider order
// and the overrides in force. A change is sent when a field is left; the next snapshot shows
// what is in force. Names and values are shown as text only.
function tuningInput(type, value, onChange) {
  const input = document.createElement("input");
  input.type = type;
  if (type === "checkbox") input.checked = value;
  else {
    input.value = value === null || value === undefined ? "" : String(value);
    input.size = 6;
  }
  input.addEventListener("change", async () => {
    await onChange(input);
    input.blur(); // the table is redrawn from the next snapshot once nothing in it has focus
  });
  return input;
}

function cell(...children) {
  const td = document.createElement("td");
  td.append(...children);
  return td;
}

function renderTuning(tuning, enabled) {
  const box = $("tuning");
  box.hidden = !enabled || !tuning || !tuning.channels;
  if (box.hidden || box.contains(document.activeElement)) return; // never under the cursor
  const words = $("tuning-words").querySelector("tbody");
  words.replaceChildren();
  for (const [key, channel] of Object.entries(tuning.channels)) {
    const own = channel.own.includes("triggers");
    const select = document.createElement("select");
    select.append(...tuning.personalities.map((n) => el("option", n)));
    select.value = channel.personality;
    select.addEventListener("change", async () => {
      await control("personality", { name: select.value, channel: key });
      select.blur();
    });
    const change = (name, field, value) =>
      control("trigger", { name, [field]: value, ...(own ? { channel: key } : {}) });
    const rows = channel.words.length ? channel.words : [null];
    for (const [index, word] of rows.entries()) {
      const row = el("tr");
      // the channel and its character once, on the channel's first row
      row.append(el("td", index ? "" : key), index ? cell() : cell(select));
      if (!word) {
        row.append(el("td", "no trigger words", "muted"));
        words.append(row);
        continue;
      }
      row.dataset.word = word.name;
      row.append(
        el("td", word.name),
        cell(tuningInput("checkbox", word.enabled, (i) => change(word.name, "enabled", i.checked))),
        cell(tuningInput("number", word.probability,
          (i) => change(word.name, "probability", Number(i.value)))),
        cell(tuningInput("number", word.cooldown_seconds,
          (i) => change(word.name, "cooldown_seconds", Number(i.value)))),
        cell(tuningInput("number", word.max_per_hour,
          (i) => change(word.name, "max_per_hour", i.value === "" ? null : Number(i.value)))),
      );
      words.append(row);
    }
  }
  $("provider-order").value = tuning.providers.join(", ");
  $("known-providers").textContent = `configured: ${tuning.known_providers.join(", ")}`;
  const overrides = $("tuning-overrides").querySelector("tbody");
  overrides.replaceChildren();
  for (const o of tuning.overrides) {
    const reset = el("button", "reset");
    reset.type = "button";
    reset.addEventListener("click", async () => {
      await control("reset", o.key);
      reset.blur();
    });
    overrides.append(
      (() => {
        const row = el("tr");
        row.append(el("td", o.key), el("td", JSON.stringify(o.value)), el("td", o.by),
          el("td", o.at), cell(reset));
        return row;
      })(),
    );
  }
  if (!tuning.overrides.length) {
    const row = el("tr");
    row.append(el("td", "no overrides: everything comes from the config files", "muted"));
    overrides.append(row);
  }
}

function render(state) {
  lastState = state;
  renderHeader(state);
  renderCounters(state);
  renderChart(state.series);
  renderHealth(state);
  renderBars("triggers", state.triggers);
  renderBars("decisions", state.decisions);
  renderProviders(state.providers);
  renderRecent(state.recent);
  renderExplore(state.explore, state.fallback_pools);
  renderEngagement(state.engagement);
  renderControls(state);
  renderConfig(state.tuning.last);
  renderTuning(state.tuning, state.service.controls_enabled);
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}

async function control(action, value) {
  const token = $("token").value;
  sessionStorage.setItem("kryten-llm-token", token);
  const result = $("control-result");
  try {
    const response = await fetch("/api/control", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
      body: JSON.stringify({ action, value }),
    });
    const body = await response.json();
    result.textContent = body.ok ? `${action}: done` : `${action}: ${body.error}`;
    result.dataset.ok = String(body.ok);
  } catch (error) {
    result.textContent = `${action}: ${error}`;
    result.dataset.ok = "false";
  }
}

function connect() {
  const source = new EventSource("/api/stream");
  source.onmessage = (event) => render(JSON.parse(event.data));
  source.onerror = () => {
    const badge = $("status");
    badge.dataset.status = "unknown";
    badge.textContent = "disconnected";
  };
}

document.addEventListener("DOMContentLoaded", () => {
  renderLegend();
  $("token").value = sessionStorage.getItem("kryten-llm-token") || "";
  $("pause").addEventListener("click", () => control("pause"));
  $("resume").addEventListener("click", () => control("resume"));
  $("dry-run").addEventListener("click", () => control("dry_run", lastState ? !lastState.service.dry_run : null));
  $("personality").addEventListener("change", (e) => control("personality", e.target.value));
  $("clear").addEventListener("click", () => control("clear_cooldowns"));
  $("reload").addEventListener("click", () => control("reload"));
  $("apply-order").addEventListener("click", async () => {
    const order = $("provider-order").value.split(",").map((n) => n.trim()).filter(Boolean);
    await control("providers", { order });
    $("apply-order").blur();
  });
  $("reset-all").addEventListener("click", async () => {
    await control("reset");
    $("reset-all").blur();
  });
  connect();
});
