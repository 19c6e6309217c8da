"""The explorer's files: crash-safe writes and the checkpoint a run resumes from.

A run's folder holds three files, each replaced atomically (temp file in the same folder,
flush, fsync, ``os.replace``, fsync of the folder), so a crash or a SIGKILL leaves either the
previous version or the new one, never a torn file:

- ``output.json``: the source of truth and the checkpoint: the topic, every unique item with
  who found it (producer, provider, model, iteration, time) and the run's counters. A resumed
  run reloads it and never repeats an item it holds.
- ``output.txt``: the unique items, one a line (derived; written after ``output.json``).
- ``metadata.json``: the report: settings, per-provider requests, yield, duplicate rates,
  tokens, cost, duration and stop reason (derived).

Whatever is lost in a crash is only what came after the last checkpoint.

One run at a time per folder: :meth:`OutputStore.lock` takes an exclusive ``flock`` on
``<folder>/.lock`` for the life of the run (the kernel drops it when the process dies, so a
killed run never leaves the folder locked), and a second run fails at once with an
:class:`~kryten_llm.errors.ExploreError`. Errors say what is wrong with the folder or the file
(the caller knows which one it gave); an ``OSError`` behind one is kept as its ``__cause__``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kryten_llm.errors import ExploreError
from kryten_llm.files import atomic_write, dump_json

OUTPUT_JSON = "output.json"
OUTPUT_TXT = "output.txt"
METADATA_JSON = "metadata.json"
LOCK_FILE = ".lock"
FORMAT_VERSION = 1


@dataclass(slots=True)
class Checkpoint:
    """What ``output.json`` holds: enough to resume without repeating anything."""

    topic: str
    items: list[dict[str, Any]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)


class OutputStore:
    """The files of one exploration run in ``folder``.

    Args:
        folder: created on the first write if missing.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock_fd: int | None = None

    def lock(self) -> None:
        """Take the folder for this run (creating it), or fail at once if another run has it.

        Idempotent; :meth:`unlock` (or the end of the process) gives it back.

        Raises:
            ExploreError: another run holds the folder (its cause is a ``BlockingIOError``),
                or the folder cannot be created or locked (caused by that ``OSError``).
        """
        if self._lock_fd is not None:
            return
        path = self.folder / LOCK_FILE
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ExploreError(f"cannot use the folder ({exc.strerror})") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if isinstance(exc, BlockingIOError):
                raise ExploreError("another explore run is writing to this folder") from exc
            raise ExploreError(
                f"cannot lock the folder ({exc.strerror}); a local folder can be locked"
            ) from exc
        self._lock_fd = fd

    def unlock(self) -> None:
        """Give the folder back (the lock file stays: removing it would race a new run)."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)

    @property
    def checkpoint_path(self) -> Path:
        return self.folder / OUTPUT_JSON

    def exists(self) -> bool:
        """Whether the folder holds a run to resume."""
        return self.checkpoint_path.is_file()

    def load(self) -> Checkpoint | None:
        """The last checkpoint, or None when the folder holds none.

        Leftover temp files of an interrupted write (only the temp names :func:`atomic_write`
        gives our three files) are removed; call :meth:`lock` first so that they cannot be
        another run's writes in progress.

        Raises:
            ExploreError: ``output.json`` cannot be read (caused by the ``OSError``) or is not
                a checkpoint of this program.
        """
        for name in (OUTPUT_JSON, OUTPUT_TXT, METADATA_JSON):
            for stale in self.folder.glob(f".{name}.*.tmp"):
                with contextlib.suppress(OSError):
                    stale.unlink()
        path = self.checkpoint_path
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ExploreError(f"cannot read ({exc.strerror})") from exc
        try:
            data = json.loads(raw)
            topic = data["topic"]
            items = data["items"]
            state = data.get("state", {})
            if not (isinstance(topic, str) and isinstance(items, list)):
                raise TypeError
            if not all(isinstance(i, dict) and isinstance(i.get("text"), str) for i in items):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise ExploreError("not an explorer checkpoint") from None
        return Checkpoint(topic=topic, items=items, state=state if isinstance(state, dict) else {})

    def write(self, checkpoint: Checkpoint, metadata: dict[str, Any]) -> None:
        """Write the checkpoint first, then the derived files (blocking; run it in a thread).

        Raises:
            OSError: the folder cannot be written.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(
            self.checkpoint_path,
            dump_json(
                {
                    "version": FORMAT_VERSION,
                    "topic": checkpoint.topic,
                    "items": checkpoint.items,
                    "state": checkpoint.state,
                }
            ),
        )
        text = "".join(item["text"] + "\n" for item in checkpoint.items)
        atomic_write(self.folder / OUTPUT_TXT, text.encode())
        atomic_write(self.folder / METADATA_JSON, dump_json(metadata))
