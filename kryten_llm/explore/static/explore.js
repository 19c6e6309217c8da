// The explore page: start, watch and stop runs. Everything from the server is inserted as
// text (textContent), never as HTML; the CSP allows no inline script.
"use strict";

const $ = (id) => document.getElementById(id);
let current = null; // the run shown in "Progress"
let polls = 0;

function headers() {
  const token = $("token").value.trim();
  const h = { "Content-Type": "application/json" };
  if (token) h.Authorization = "Bearer " + token;
  return h;
}

function withToken(url) {
  const token = $("token").value.trim();
  return token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url;
}

async function api(path, options = {}) {
  const response = await fetch("/explore/api" + path, { headers: headers(), ...options });
  const body = await response.json().catch(() => ({ ok: false, error: response.statusText }));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  row.appendChild(td);
  return td;
}

function fill(tbody, rows, columns) {
  tbody.replaceChildren();
  for (const row of rows) {
    const tr = document.createElement("tr");
    for (const column of columns) cell(tr, column(row));
    tbody.appendChild(tr);
  }
}

function say(text, bad) {
  $("message").textContent = text;
  $("message").className = bad ? "bad" : "";
}

async function loadProviders() {
  try {
    const { providers } = await api("/providers");
    $("providers").replaceChildren(...providers.map((name) => {
      const option = document.createElement("option");
      option.value = option.textContent = name;
      return option;
    }));
  } catch (error) { say(error.message, true); }
}

async function start(event) {
  event.preventDefault();
  const chosen = [...$("providers").selectedOptions].map((o) => o.value);
  const inline = $("inline").value.split(",").map((s) => s.trim()).filter(Boolean);
  const form = {
    topic: $("topic").value,
    producers: $("producers").value,
    similarity: $("similarity").value,
    providers: [...chosen, ...inline],
  };
  form[$("stop-kind").value] = $("stop-value").value;
  try {
    const result = await api("/runs", { method: "POST", body: JSON.stringify(form) });
    current = result.id;
    say(result.resumed ? `resumed ${result.id} (${result.resumed} known items)` : `started ${result.id}`);
    await refresh();
  } catch (error) { say(error.message, true); }
}

async function stop() {
  if (!current) return;
  try {
    await api(`/runs/${encodeURIComponent(current)}/stop`, { method: "POST" });
    say(`stopping ${current}`);
  } catch (error) { say(error.message, true); }
}

function showRun(run) {
  $("run-id").textContent = run.id + (run.topic ? " — " + run.topic : "");
  $("items").textContent = run.items ?? 0;
  $("rate").textContent = run.rate ?? "–";
  const y = run.counts && run.counts.yield;
  $("yield").textContent = y === null || y === undefined ? "–" : (y * 100).toFixed(0) + "%";
  $("stop-reason").textContent = run.stop_reason || (run.running ? "running" : "–");
  $("state").textContent = run.running ? "running" : (run.state || "stopped");
  $("state").className = "badge" + (run.running ? " running" : "");
  $("stop").disabled = !run.running;
  $("error").textContent = run.error || "";
  const providers = Object.entries(run.providers || {}).map(([name, c]) => ({ name, ...c }));
  fill($("provider-rows"), providers, [(p) => p.name, (p) => p.requests, (p) => p.received, (p) => p.new,
    (p) => (p.yield === null || p.yield === undefined ? null : (p.yield * 100).toFixed(0) + "%")]);
  fill($("producer-rows"), run.producers || [], [(p) => p.name, (p) => p.provider, (p) => p.iteration,
    (p) => p.new, (p) => p.per_request, (p) => p.state]);
  $("newest").replaceChildren(...(run.newest || []).map((text) => {
    const li = document.createElement("li");
    li.textContent = text;
    return li;
  }));
  $("files").replaceChildren(...(run.files || []).map((name) => {
    const a = document.createElement("a");
    a.textContent = name;
    a.href = withToken(`/explore/api/runs/${encodeURIComponent(run.id)}/files/${name}`);
    a.download = name;
    a.dataset.file = name;
    return a;
  }));
}

function showRuns(runs) {
  const tbody = $("runs");
  tbody.replaceChildren();
  for (const run of runs) {
    const tr = document.createElement("tr");
    tr.dataset.run = run.id;
    cell(tr, run.topic);
    cell(tr, run.items);
    cell(tr, run.running ? "running" : run.stop_reason);
    const actions = cell(tr, "");
    const open = document.createElement("button");
    open.textContent = "Open";
    open.className = "open";
    open.addEventListener("click", () => { current = run.id; refresh(); });
    const resume = document.createElement("button");
    resume.textContent = "Resume";
    resume.className = "resume";
    resume.disabled = run.running;
    resume.addEventListener("click", (event) => { $("topic").value = run.topic || ""; start(event); });
    actions.append(open, " ", resume);
    tbody.appendChild(tr);
  }
}

async function refresh() {
  try {
    showRuns((await api("/runs")).runs);
    if (current) showRun(await api(`/runs/${encodeURIComponent(current)}`));
    document.body.dataset.polls = String(++polls);
  } catch (error) { say(error.message, true); }
}

$("start-form").addEventListener("submit", start);
$("stop").addEventListener("click", stop);
loadProviders();
refresh();
setInterval(refresh, 500);
