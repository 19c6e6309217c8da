"""Crash-safe file writes, shared by batch outputs, explore runs and fallback pools.

A file is replaced atomically: written to a temp file in the same folder, flushed, fsynced,
renamed over the old one with ``os.replace``, and the folder fsynced so the rename itself
survives a power cut. A reader or a crash sees the old content or the new, never half.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers and crashes see old or new, never half.

    Args:
        path: the file; its folder must exist.
        data: the complete new content.

    Raises:
        OSError: the folder is not writable or the disk is full (the old file is kept).
    """
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private; keep the old file's mode, else a normal 0644.
        try:
            mode = path.stat().st_mode & 0o777
        except OSError:
            mode = 0o644
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_dir(path.parent)


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
