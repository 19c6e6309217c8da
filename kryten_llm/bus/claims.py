"""Claims that survive restarts and hold across instances: "this key is mine for a while".

The bot comments on a video title at most once per window, also after a restart and when
several instances serve one channel. That is a *claim*: :meth:`ClaimStore.claim` records a key
with the time and says whether nobody had claimed it within the window, in one step. Two
stores implement it:

- :class:`KVClaimStore`, in a NATS JetStream KV bucket, with compare-and-set (``create`` when
  the key is new, ``update`` at the revision read otherwise): of several instances claiming
  the same key at once exactly one wins;
- :class:`FileClaimStore`, a JSON file replaced atomically on every claim, for a server
  without JetStream (one instance).

Times are wall-clock seconds (``time.time()``): a monotonic clock starts again at every boot,
and a claim must outlive the process. Keys are made safe for KV by :func:`claim_key`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import structlog
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from kryten_llm.errors import StoreError
from kryten_llm.files import atomic_write

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext
    from nats.js.kv import KeyValue

log = structlog.get_logger(__name__)

MAX_FILE_CLAIMS = 10_000  # the oldest are forgotten beyond this: the file stays small
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def claim_key(scope: str, text: str) -> str:
    """A KV-safe key for ``text`` within ``scope``: the scope's safe letters, a text hash.

    The text is compared without case and with runs of spaces as one, so "The  Thing" and
    "the thing" are the same title.
    """
    normal = " ".join(text.casefold().split())
    digest = hashlib.sha256(normal.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{_UNSAFE.sub('_', scope)[:64] or '_'}.{digest}"


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


def _stamp(raw: bytes | None) -> float | None:
    """The time stored in a claim's value, ``None`` when unreadable."""
    try:
        value = json.loads(raw or b"")
    except ValueError:
        return None
    at = value.get("at") if isinstance(value, dict) else None
    if isinstance(at, int | float) and not isinstance(at, bool) and math.isfinite(at):
        return float(at)
    return None


class KVClaimStore:
    """Claims in a JetStream KV bucket, shared by every instance on the server."""

    def __init__(self, kv: KeyValue, bucket: str) -> None:
        self._kv = kv
        self._bucket = bucket

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str) -> KVClaimStore:
        """Bind to ``bucket``, creating it (one value per key) when it does not exist.

        Raises:
            nats.errors.Error: JetStream is not available (the caller chooses another store).
        """
        try:
            kv = await js.key_value(bucket)
        except Exception:  # not there yet (or a race with another instance creating it)
            kv = await js.create_key_value(bucket=bucket, history=1)
        return cls(kv, bucket)

    @property
    def where(self) -> str:
        return f"kv:{self._bucket}"

    async def claimed_at(self, key: str) -> float | None:
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:  # KeyDeletedError too
            return None
        return _stamp(entry.value)

    async def claim(self, key: str, now: float, window: float) -> bool:
        value = json.dumps({"at": now}).encode()
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            entry = None
        try:
            if entry is None:
                await self._kv.create(key, value)
                return True
            at = _stamp(entry.value)
            if at is not None and now - at < window:
                return False
            await self._kv.update(key, value, last=entry.revision)
        except KeyWrongLastSequenceError:  # another instance claimed it between get and set
            return False
        return True


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
            stamp = _stamp(json.dumps({"at": at}).encode())
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
