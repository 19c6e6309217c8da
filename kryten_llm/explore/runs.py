"""Explore runs started from a web page: start, watch, stop, list, resume, in one process.

The model behind the explore page (:mod:`kryten_llm.explore.web`), whether it is served by
``kryten-llm explore --web`` or by the bot's dashboard. A :class:`RunBoard` owns a root folder
(``output/`` by default); each run writes to ``<root>/<topic-slug>/`` exactly as the command
line does (the same files, the same folder lock, so a CLI run and a page run never share a
folder), and starting a topic whose folder holds a checkpoint resumes it. Runs go on in the
background of the serving process; :meth:`RunBoard.close` stops them all and waits for their
last checkpoint.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from kryten_llm.config import LLMConfig
from kryten_llm.errors import ConfigError, ExploreError
from kryten_llm.explore.explorer import Explorer, StopReason
from kryten_llm.explore.output import OutputStore
from kryten_llm.explore.settings import ExploreSettings
from kryten_llm.files import read_json_object
from kryten_llm.pools import slug

if TYPE_CHECKING:
    import aiohttp

    from kryten_llm.config import Settings
    from kryten_llm.llm.manager import ProviderManager

log = structlog.get_logger(__name__)

FILES = ("output.txt", "output.json", "metadata.json")
NEWEST = 15  # items shown as "newest" on the page
PROBE_SECONDS = 10.0
_RUN_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,59}$")
# What the form may set, and how each value is read.
_FORM_NUMBERS: dict[str, Callable[[Any], Any]] = {
    "producers": int,
    "iterations": int,
    "target": int,
    "similarity": float,
}


class RunRefused(ExploreError):
    """A start the page asked for cannot happen; ``status`` is the HTTP answer to give."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


@dataclass
class WebRun:
    """One run started from the page, running or ended in this process."""

    id: str
    store: OutputStore
    explorer: Explorer
    resumed: int
    task: asyncio.Task[None] | None = None
    error: str | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()


def valid_run_id(run_id: str) -> bool:
    """Whether ``run_id`` can name a folder under the root (a slug: no path tricks)."""
    return bool(_RUN_ID.match(run_id))


class RunBoard:
    """The runs of one root folder.

    Args:
        root: where run folders are (created on the first start).
        settings: the configuration to read providers, retries and breakers from, read at
            each start (so a reloaded configuration applies to the next run).
    """

    def __init__(self, root: Path, settings: Callable[[], Settings]) -> None:
        self.root = root
        self._settings = settings
        self._runs: dict[str, WebRun] = {}

    def providers(self) -> list[str]:
        """The configured provider names the form offers."""
        return sorted(self._settings().llm.providers)

    async def start(self, form: Mapping[str, Any]) -> WebRun:
        """Start (or resume) the run the form describes.

        Args:
            form: ``topic``, ``providers`` (configured names or inline specs), ``producers``,
                ``iterations`` or ``target``, ``similarity``.

        Raises:
            RunRefused: a bad value (400), or the folder is busy (409).
        """
        topic = str(form.get("topic") or "").strip()
        if not topic:
            raise RunRefused(400, "topic: required")
        numbers: dict[str, Any] = {}
        for name, kind in _FORM_NUMBERS.items():
            value = form.get(name)
            if value not in (None, ""):
                try:
                    numbers[name] = kind(value)
                except (TypeError, ValueError):
                    raise RunRefused(400, f"{name}: {value!r} is not a number") from None
        try:
            settings = ExploreSettings(topic=topic, **numbers)
        except ExploreError as exc:
            raise RunRefused(400, str(exc)) from None
        specs = [str(s).strip() for s in form.get("providers") or [] if str(s).strip()]
        llm, order = self._llm(specs)
        run_id = slug(topic)
        current = self._runs.get(run_id)
        if current is not None and current.running:
            raise RunRefused(409, f"{run_id} is running: stop it first")
        store = OutputStore(self.root / run_id)
        try:
            store.lock()
        except ExploreError as exc:
            raise RunRefused(409, f"{run_id}: {exc}") from None
        try:
            checkpoint = store.load()
        except ExploreError as exc:  # unreadable or corrupt: the page says which
            store.unlock()
            raise RunRefused(409, f"{run_id}: {exc}") from None
        if checkpoint is not None and checkpoint.topic != topic:
            store.unlock()
            raise RunRefused(409, f"{run_id} holds the topic {checkpoint.topic!r}")
        import aiohttp

        from kryten_llm.llm import build_manager

        session = aiohttp.ClientSession()
        manager = build_manager(llm, session)
        explorer = Explorer(settings, manager, order, store)
        if checkpoint is not None:
            explorer.resume_from(checkpoint)
        run = WebRun(run_id, store, explorer, resumed=len(checkpoint.items) if checkpoint else 0)
        run.task = asyncio.create_task(self._run(run, manager, session), name=f"explore-{run_id}")
        self._runs[run_id] = run
        log.info("explore_web_started", run=run_id, providers=order, resumed=run.resumed)
        return run

    def _llm(self, specs: list[str]) -> tuple[LLMConfig, list[str]]:
        """The providers of a run, from the form's specs and the configuration."""
        from kryten_llm.explore.plan import resolve_providers

        config = self._settings()
        try:
            providers, order = resolve_providers(config, specs, None, None)
        except ConfigError as exc:
            raise RunRefused(
                400, "; ".join(f"{w}: {m} ({f})" for w, m, f in exc.problems)
            ) from None
        llm = LLMConfig(
            providers=providers,
            default_provider=order[0],
            retry=config.llm.retry,
            circuit=config.llm.circuit,
        )
        return llm, order

    async def _run(
        self, run: WebRun, manager: ProviderManager, session: aiohttp.ClientSession
    ) -> None:
        try:
            auto = [n for n, p in manager.providers.items() if p.model == "auto"]
            if auto:
                results = await manager.probe_all(PROBE_SECONDS, names=auto)
                failed = [f"{r.name}: {r.detail}" for r in results if not r.ok]
                if failed:
                    run.error = "; ".join(failed)
                    run.explorer.stop(StopReason.PROVIDERS_FAILED)
            await run.explorer.run()
        except Exception as exc:  # shown on the page; the files hold what was found
            run.error = str(exc) or type(exc).__name__
            log.exception("explore_web_failed", run=run.id)
        finally:
            run.store.unlock()
            await session.close()

    def stop(self, run_id: str) -> WebRun:
        """Ask a run to stop (it writes its files and ends). Idempotent.

        Raises:
            RunRefused: no such run in this process (404).
        """
        run = self._runs.get(run_id)
        if run is None:
            raise RunRefused(404, f"no run {run_id!r} was started here")
        run.explorer.stop(StopReason.STOPPED)
        return run

    async def close(self) -> None:
        """Stop every run and wait for their final checkpoints."""
        tasks = [run.task for run in self._runs.values() if run.task is not None]
        for run in self._runs.values():
            run.explorer.stop(StopReason.INTERRUPTED)
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- reading ---------------------------------------------------------------------------

    def runs(self) -> list[dict[str, Any]]:
        """Every run under the root (newest first), with its topic, items and state."""
        listed: dict[str, dict[str, Any]] = {}
        if self.root.is_dir():
            for meta_path in self.root.glob("*/metadata.json"):
                run_id = meta_path.parent.name
                if not valid_run_id(run_id):
                    continue
                meta = read_json_object(meta_path) or {}
                listed[run_id] = {
                    "id": run_id,
                    "topic": meta.get("topic"),
                    "items": meta.get("items"),
                    "stop_reason": meta.get("stop_reason"),
                    "updated_at": meta.get("updated_at"),
                    "running": False,
                }
        for run_id, run in self._runs.items():
            snap = run.explorer.snapshot()
            entry = listed.setdefault(run_id, {"id": run_id, "updated_at": ""})
            entry.update(topic=snap["topic"], items=snap["items"], running=run.running)
            entry["stop_reason"] = snap["stop_reason"]
        return sorted(listed.values(), key=lambda r: (r["running"], r["updated_at"] or ""))[::-1]

    def detail(self, run_id: str) -> dict[str, Any]:
        """A run's live state (or, for a past run, what its files say) and its newest items.

        Raises:
            RunRefused: no such run (404).
        """
        run = self._runs.get(run_id)
        if run is not None:
            snap = run.explorer.snapshot()
            items = run.explorer.items
            found = snap["items"] - run.resumed
            elapsed = time.monotonic() - run.started
            per_producer = Counter(item["producer"] for item in items[run.resumed :])
            for producer in snap["producers"]:
                requests = producer["iteration"] or 0
                producer["new"] = per_producer.get(producer["name"], 0)
                producer["per_request"] = round(producer["new"] / requests, 2) if requests else None
            return {
                "id": run_id,
                "running": run.running,
                "error": run.error,
                "rate": round(found / elapsed, 2) if elapsed > 0 else 0.0,
                "newest": [item["text"] for item in items[-NEWEST:]][::-1],
                "files": [name for name in FILES if (run.store.folder / name).exists()],
                **snap,
            }
        folder = self.root / run_id
        if not valid_run_id(run_id) or not (folder / "metadata.json").is_file():
            raise RunRefused(404, f"no run {run_id!r}")
        meta = read_json_object(folder / "metadata.json") or {}
        lines = _tail(folder / "output.txt", NEWEST)
        return {
            "id": run_id,
            "running": False,
            "error": None,
            "rate": None,
            "newest": lines[::-1],
            "files": [name for name in FILES if (folder / name).exists()],
            "topic": meta.get("topic"),
            "items": meta.get("items"),
            "state": meta.get("state"),
            "stop_reason": meta.get("stop_reason"),
            "providers": meta.get("providers", {}),
            "producers": meta.get("producers", []),
            "counts": meta.get("counts", {}),
            "settings": meta.get("settings", {}),
        }

    def file(self, run_id: str, name: str) -> Path:
        """The path of one of a run's files.

        Raises:
            RunRefused: not a run file, or it does not exist (404).
        """
        path = self.root / run_id / name
        if name not in FILES or not valid_run_id(run_id) or not path.is_file():
            raise RunRefused(404, f"no file {name!r} in run {run_id!r}")
        return path


def _tail(path: Path, count: int) -> list[str]:
    try:
        return path.read_text("utf-8").splitlines()[-count:]
    except OSError:
        return []
