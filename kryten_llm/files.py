"""Crash-safe file writes, shared by batch outputs, explore runs and fallback pools.

A file is replaced atomically: written to a temp file in the same folder, flushed, fsynced,
renamed over the old one with ``os.replace``, and the folder fsynced so the rename itself
survives a power cut. A reader or a crash sees the old content or the new, never half.

Two kinds of path are written *through* instead of replaced: a symbolic link (the file it
points to is replaced, the link stays) and anything that is not a regular file
(``/dev/stdout``, a FIFO, a terminal), which is opened and written in place: renaming over
those would replace the device or pipe by a plain file. :func:`exclusive_lock` keeps two
processes from writing the same file at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers and crashes see old or new, never half.

    Args:
        path: the file; its folder must exist.
        data: the complete new content.

    Raises:
        OSError: the folder is not writable or the disk is full (the old file is kept).
    """
    with atomic_open(path, "wb") as file:
        file.write(data)


@contextlib.contextmanager
def atomic_open(path: Path, mode: Literal["w", "wb"] = "w") -> Iterator[IO[Any]]:
    """A file to write ``path``'s new content into, streamed; it replaces ``path`` on exit.

    Text mode is UTF-8 with newlines written as given (CSV writers want that). If the block
    raises, the temp file is removed and ``path`` is left as it was.

    Args:
        path: the file; its folder must exist.
        mode: ``"w"`` (text) or ``"wb"`` (bytes).

    Raises:
        OSError: the folder is not writable or the disk is full (the old file is kept).
    """
    path = Path(os.path.realpath(path))  # a link is written through: its target is replaced
    if is_special(path):
        with _open_in_place(path, mode) as stream:
            yield stream
        return
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private; keep the old file's mode, else a normal 0644.
        try:
            mode_bits = path.stat().st_mode & 0o777
        except OSError:
            mode_bits = 0o644
        os.fchmod(fd, mode_bits)
        file: IO[Any] = (
            os.fdopen(fd, "w", encoding="utf-8", newline="") if mode == "w" else os.fdopen(fd, "wb")
        )
        with file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_dir(path.parent)


def is_special(path: Path) -> bool:
    """Whether ``path`` exists and is not a regular file (a device, a FIFO, a socket...),
    following links: such a file is written in place, never replaced."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


@contextlib.contextmanager
def _open_in_place(path: Path, mode: Literal["w", "wb"]) -> Iterator[IO[Any]]:
    file: IO[Any] = (
        open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed below
        if mode == "w"
        else open(path, "wb")  # noqa: SIM115
    )
    with file:
        yield file
        file.flush()


@contextlib.contextmanager
def exclusive_lock(path: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold an advisory lock on the file ``path`` (created if missing) for the block.

    The lock file is a sidecar that is never replaced, so the lock holds across atomic
    rewrites of the file it protects. The lock ends with the block or the process (a SIGKILL
    releases it too).

    Args:
        path: the lock file.
        wait: wait for the lock; False yields False at once when another process holds it.

    Yields:
        True when the lock is held.

    Raises:
        OSError: the lock file cannot be created.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def dump_json(data: Any) -> bytes:
    """Readable, stable JSON with non-ASCII kept as is: how explore and the pools write files."""
    return (json.dumps(data, ensure_ascii=False, indent=1) + "\n").encode()


def fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (not possible on every platform; best effort)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing, unreadable or not an object
    (for files the program wrote itself and can do without; a config file's errors are
    reported instead, see :func:`kryten_llm.config.layers.read_json_object`)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
