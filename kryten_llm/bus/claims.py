"""Claims that survive restarts: "this key is mine for a while".

The bot comments on a video title at most once per window, also after a restart and when
several instances serve one channel. That is a *claim*: :meth:`ClaimStore.claim` records a key
with the time and says whether nobody had claimed it within the window, in one step. Two
stores implement it:

- :class:`~kryten_llm.cluster.seen.KVClaimStore`, in a NATS JetStream KV bucket with
  compare-and-set, shared by several instances (it lives with the other shared state, on
  :mod:`kryten_llm.cluster.kv`);
- :class:`FileClaimStore`, here: a JSON file replaced atomically on every claim, for a server
  without JetStream (one instance).

Times are wall-clock seconds (``time.time()``): a monotonic clock starts again at every boot,
and a claim must outlive the process. Keys come from :func:`kryten_llm.cluster.seen.claim_key`.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any, Protocol

import structlog

from kryten_llm.errors import StoreError
from kryten_llm.files import atomic_write

log = structlog.get_logger(__name__)

MAX_FILE_CLAIMS = 10_000  # the oldest are forgotten beyond this: the file stays small


class ClaimStore(Protocol):
    """Keys claimed with the time they were claimed."""

    @property
    def where(self) -> str:
        """Where the claims live, for logs (a file path or ``kv:<bucket>``)."""

    async def claim(self, key: str, now: float, window: float) -> bool:
        """Claim ``key`` at ``now`` unless it was claimed within ``window`` seconds before.

        Returns:
            True when the claim is ours (and recorded), False when someone holds it.
        """

    async def claimed_at(self, key: str) -> float | None:
        """When ``key`` was last claimed, if it was."""


def stamp_of(value: Any) -> float | None:
    """The time in a claim's value (``{"at": 1764480000.5}``), ``None`` when there is none."""
    at = value.get("at") if isinstance(value, dict) else None
    if isinstance(at, int | float) and not isinstance(at, bool) and math.isfinite(at):
        return float(at)
    return None


class FileClaimStore:
    """Claims in a JSON file ``{key: time}``, for one instance without JetStream.

    Raises:
        StoreError: from :meth:`open`, when the file exists but cannot be read as claims.
    """

    def __init__(self, path: Path, claims: dict[str, float]) -> None:
        self._path = path
        self._claims = claims

    @classmethod
    def open(cls, path: Path) -> FileClaimStore:
        """Read ``path`` (missing: no claims yet).

        Raises:
            StoreError: the file cannot be read, is not JSON, or holds something else.
        """
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls(path, {})
        except OSError as exc:
            raise StoreError(path, f"cannot read it ({exc.strerror})") from None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise StoreError(path, f"not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise StoreError(path, "does not hold a JSON object of claims")
        claims = {}
        for key, at in data.items():
            stamp = stamp_of({"at": at})
            if stamp is None:
                raise StoreError(path, f"the claim {key!r} has no time")
            claims[key] = stamp
        return cls(path, claims)

    @property
    def where(self) -> str:
        return str(self._path)

    async def claimed_at(self, key: str) -> float | None:
        return self._claims.get(key)

    async def claim(self, key: str, now: float, window: float) -> bool:
        at = self._claims.get(key)
        if at is not None and now - at < window:
            return False
        self._claims.pop(key, None)
        self._claims[key] = now  # newest last: the oldest go first when the file is full
        while len(self._claims) > MAX_FILE_CLAIMS:
            del self._claims[next(iter(self._claims))]
        self._save()
        return True

    def _save(self) -> None:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self._path, json.dumps(self._claims).encode())
        except OSError as exc:  # remembered for this run; said loudly, never fatal
            log.error("claims_not_saved", path=str(self._path), error=str(exc))


def set_aside(path: Path) -> Path | None:
    """Rename a broken claims file out of the way (kept for a look); the new name, if moved."""
    target = path.with_name(path.name + ".broken")
    with contextlib.suppress(OSError):
        path.replace(target)
        return target
    return None
