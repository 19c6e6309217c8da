"""One writer per output file: a second run writing the same ``-o`` refuses before it starts.

Without a lock, two runs with the same ``-o`` would each rewrite the file from their own
answers and the last writer would silently win. :func:`output_lock` takes an advisory lock on
a sidecar of the output (``.<name>.lock`` beside the file the path resolves to, so a link and
its target share it) for the whole run, before any request is sent; a run that finds it taken
stops with a usage error. The lock dies with its process, so a SIGKILLed run never blocks the
next one. Stdout, devices and FIFOs are not locked (nothing is replaced there).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from kryten_llm.batch.outputs import written_once
from kryten_llm.errors import ConfigError
from kryten_llm.files import exclusive_lock


def lock_path(output: Path) -> Path:
    """The sidecar lock file of ``output``."""
    real = Path(os.path.realpath(output))
    return real.parent / f".{real.name}.lock"


@contextlib.contextmanager
def output_lock(output: Path | None) -> Iterator[None]:
    """Hold the lock of ``output`` for the block (nothing for None, stdout or a device).

    Raises:
        ConfigError: another process holds it, or it cannot be created.
    """
    if output is None or written_once(output):
        yield
        return
    path = lock_path(output)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = exclusive_lock(path, wait=False)
        held = lock.__enter__()
    except OSError as exc:
        raise ConfigError(
            [("output", f"cannot lock {output}: {exc}", "give a file in a writable folder")]
        ) from None
    try:
        if not held:
            raise ConfigError(
                [
                    (
                        "output",
                        f"another batch is writing {output}",
                        "wait for it to end, or give another output file",
                    )
                ]
            )
        yield
    finally:
        lock.__exit__(None, None, None)
