"""Diagnostic logging: structlog configured once, at the entry point.

JSON lines when stderr is not a terminal (systemd, CI), coloured key-value output on a terminal.
Every event is a snake_case fact with fields (``reply_sent``, ``provider_failed``); the worker
binds ``correlation_id``, ``channel`` and ``username`` through ``structlog.contextvars`` for the
life of one message, so every line it logs carries them.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Set up structlog (and the stdlib root logger, for libraries) for the whole process.

    Args:
        level: DEBUG, INFO, WARNING or ERROR.
        fmt: ``json``, ``console``, or ``auto`` (console on a TTY, JSON otherwise).
    """
    numeric = logging.getLevelName(level.upper())
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if as_json:
        processors += [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_StderrLogger,
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, force=True)


class _StderrLogger:
    """Writes each rendered line to ``sys.stderr`` as it is *now*.

    structlog's ``PrintLogger`` keeps the stream it was created with; a process that swaps
    stderr later (a daemon's redirect, a test's capture that has since been closed) would then
    write into a dead file. Looking the stream up per line costs an attribute read.
    """

    def __init__(self, *_args: object) -> None:
        pass

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = error = critical = exception = fatal = msg
