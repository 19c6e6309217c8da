"""One HTTP call to a provider's API, with every failure classified once, for every provider.

Both API providers (OpenAI-compatible and Anthropic) send JSON and read JSON back, or a stream
of server-sent events (:func:`server_events`), over the service's shared aiohttp session. This
module owns what they have in common, so that it cannot drift between them: the time budget
(total and per-read, so a slow drip of bytes cannot outlast it), the status ladder,
``Retry-After``, the server's error text, and keeping secrets out of all of it
(:mod:`kryten_llm.llm.redact`).

==========================================  =======================  =========
What happened                               Raised                   Retryable
==========================================  =======================  =========
no answer within the budget, or 408         ProviderTimeout          yes
refused, reset, DNS failure, cut body       ProviderUnavailable      yes
5xx (``status`` kept), 529 overloaded       ProviderUnavailable      yes
2xx that is not a JSON object               ProviderUnavailable      yes
429                                         RateLimited(retry_after) yes
402, or 400/403/429 about credit (below)    QuotaExhausted           no
401, 403                                    AuthFailed               no
400, 404, 413, 422 and any other 4xx        BadRequest               no
a request aiohttp refuses to send           BadRequest               no
==========================================  =======================  =========

The credit heuristic is the one place where text is matched: servers report an exhausted
balance on statuses other than 402 (OpenAI: 429 ``insufficient_quota``; the Anthropic API: 400
"credit balance is too low"), so a 400/403/429 whose error text mentions credit, quota or a
usage limit is QuotaExhausted. A 429 that carries ``Retry-After`` stays RateLimited whatever it
says: the server is telling us when to come back, which an empty account cannot do. The text of
a 401/403 is left out of the error: some servers echo the (masked) key back.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import math
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any

import aiohttp

from kryten_llm.errors import (
    AuthFailed,
    BadRequest,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    QuotaExhausted,
    RateLimited,
)
from kryten_llm.llm.redact import Redactor

if TYPE_CHECKING:
    from kryten_llm.config import ProviderConfig

_QUOTA = re.compile(r"credit|quota|usage[ _-]?limit", re.IGNORECASE)
_QUOTA_STATUSES = frozenset({400, 403, 429})
_MESSAGE_LIMIT = 200


@contextlib.asynccontextmanager
async def exchange(
    session: aiohttp.ClientSession,
    provider: str,
    method: str,
    url: str,
    *,
    config: ProviderConfig,
    headers: Mapping[str, str],
    budget: float,
    body: Any = None,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """Send one request; the open response when its status is below 400.

    Every failure is classified (the table in the module docstring), also one raised while
    the caller reads the body inside the ``async with``: a timeout, a cut connection, or a
    ProviderError of the caller's own (redacted like the others).

    Args:
        session: the shared client session.
        provider: the provider's name, for error messages.
        method: the HTTP method.
        url: the URL to call.
        config: the provider's config (which variable holds its key, for the 401 hint).
        headers: the headers to send.
        budget: seconds for the whole exchange, reading the body included.
        body: sent as JSON when given.

    Yields:
        The response, status below 400, body unread.

    Raises:
        ProviderError: classified as in the module docstring; no secret in its message.
    """
    redact = Redactor.for_request(url, headers)  # base_url, key and headers are all in these
    timeout = aiohttp.ClientTimeout(total=budget, sock_read=budget)
    try:
        async with contextlib.AsyncExitStack() as stack:
            try:
                response = await stack.enter_async_context(
                    session.request(method, url, headers=dict(headers), json=body, timeout=timeout)
                )
            except ValueError as exc:  # aiohttp refuses it (credentials in the URL and a key)
                message = f"the request cannot be sent: {redact(str(exc))}"
                raise BadRequest(provider, message) from None
            if response.status >= 400:
                raise classify_status(
                    provider,
                    response.status,
                    error_message(await response.read(), redact),
                    response.headers.get("Retry-After"),
                    key_hint=key_hint(provider, config),
                )
            yield response
    except ProviderError as exc:
        raise redact.scrub(exc) from None
    except TimeoutError:
        raise ProviderTimeout(provider, f"no answer within {budget:g} s") from None
    except aiohttp.ClientConnectionError as exc:
        raise ProviderUnavailable(provider, f"connection failed: {type(exc).__name__}") from None
    except aiohttp.ClientError as exc:
        raise ProviderUnavailable(provider, f"request failed: {type(exc).__name__}") from None


async def request_json(
    session: aiohttp.ClientSession,
    provider: str,
    method: str,
    url: str,
    *,
    config: ProviderConfig,
    headers: Mapping[str, str],
    budget: float,
    body: Any = None,
) -> dict[str, Any]:
    """Send one request and return the JSON object the server answered.

    Args: as for :func:`exchange`.

    Returns:
        The decoded JSON object.

    Raises:
        ProviderError: classified as in the module docstring; no secret in its message.
    """
    async with exchange(
        session, provider, method, url, config=config, headers=headers, budget=budget, body=body
    ) as response:
        raw = await response.read()
    return json_object(provider, raw)


def json_object(provider: str, raw: bytes | str) -> dict[str, Any]:
    """``raw`` decoded as a JSON object.

    Raises:
        ProviderUnavailable: it is not JSON, or not an object.
    """
    try:
        data = json.loads(raw)
    except ValueError:
        raise ProviderUnavailable(provider, "malformed response: not JSON") from None
    if not isinstance(data, dict):
        raise ProviderUnavailable(provider, "malformed response: not a JSON object")
    return data


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """One server-sent event: its ``event`` name (``message`` when unnamed) and ``data``.

    A server that answers a streamed request with a plain JSON body gives one event named
    ``json`` whose data is that body.
    """

    event: str
    data: str


async def server_events(
    session: aiohttp.ClientSession,
    provider: str,
    url: str,
    *,
    config: ProviderConfig,
    headers: Mapping[str, str],
    budget: float,
    body: Any,
) -> AsyncIterator[ServerEvent]:
    """POST ``body`` and yield the server-sent events of the answer as they arrive.

    Closing the iterator closes the connection (a model behind it stops generating). The
    budget covers the whole stream.

    Args: as for :func:`exchange`.

    Raises:
        ProviderError: classified as for :func:`exchange`; a line too long to be an event is
            ProviderUnavailable.
    """
    async with exchange(
        session, provider, "POST", url, config=config, headers=headers, budget=budget, body=body
    ) as response:
        if response.content_type != "text/event-stream":
            yield ServerEvent("json", (await response.read()).decode("utf-8", "replace"))
            return
        name, data = "", list[str]()
        try:
            async for raw in response.content:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line:
                    if data:
                        yield ServerEvent(name or "message", "\n".join(data))
                    name, data = "", []
                    continue
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "event":
                    name = value
                elif field == "data":
                    data.append(value)
        except ValueError:  # aiohttp: a line over its limit
            raise ProviderUnavailable(provider, "malformed stream: a line too long") from None
        if data:
            yield ServerEvent(name or "message", "\n".join(data))


def classify_status(
    provider: str, status: int, message: str, retry_after: str | None, *, key_hint: str
) -> ProviderError:
    """The error an HTTP status >= 400 means (the table in the module docstring).

    Args:
        provider: the provider's name.
        status: the HTTP status.
        message: the server's explanation, already redacted and cut to length.
        retry_after: the ``Retry-After`` header, if any.
        key_hint: what to set to fix a refused key (see :func:`key_hint`).

    Returns:
        The classified error, with ``status`` kept.
    """
    if status == 402 or (
        status in _QUOTA_STATUSES and _QUOTA.search(message) and not (status == 429 and retry_after)
    ):
        return QuotaExhausted(provider, f"out of credit ({status}): {message}", status=status)
    if status == 429:
        return RateLimited(
            provider, f"rate limited: {message}", retry_after=parse_retry_after(retry_after)
        )
    if status in (401, 403):
        return AuthFailed(provider, f"authentication failed ({status}): {key_hint}", status=status)
    if status == 408:
        return ProviderTimeout(provider, f"server timed out (408): {message}", status=status)
    if 400 <= status < 500:
        return BadRequest(provider, f"request refused ({status}): {message}", status=status)
    return ProviderUnavailable(provider, f"server error ({status}): {message}", status=status)


def key_hint(provider: str, config: ProviderConfig) -> str:
    """What an operator sets to fix a refused key, e.g. ``set OPENROUTER_API_KEY``.

    Args:
        provider: the provider's name (its key in ``llm.providers``).
        config: its config slice.

    Returns:
        The instruction.
    """
    if config.api_key_env:
        return f"set {config.api_key_env}"
    return f"set KRYTEN_LLM_LLM__PROVIDERS__{provider.upper()}__API_KEY or api_key_env"


def error_message(raw: bytes, redact: Redactor | None = None) -> str:
    """The server's explanation, redacted, then cut to 200 characters.

    Understands OpenAI ``{"error": {"message", "code", "type"}}`` (Anthropic's errors have the
    same shape), ``{"error": "text"}``, vLLM ``{"message": ...}``, FastAPI ``{"detail": ...}``,
    and uses the body itself when it is not JSON.

    Args:
        raw: the response body.
        redact: blanks out secrets before the text is cut (a cut secret would not match).

    Returns:
        One line of at most 200 characters.
    """
    try:
        data = json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", "replace").strip()
    else:
        if isinstance(data, dict):
            error = data.get("error")
            if isinstance(error, dict):
                parts = [str(error[k]) for k in ("message", "code", "type") if error.get(k)]
                text = " / ".join(parts)
            else:
                text = str(error or data.get("message") or data.get("detail") or data)
        else:
            text = str(data)
    if redact is not None:
        text = redact(text)
    return " ".join(text.split())[:_MESSAGE_LIMIT]


MAX_RETRY_AFTER = 3600.0  # the longest pause a Retry-After can impose (as a 402's cool-down)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header.

    Args:
        value: delta-seconds (``"7"``, ``"0.5"``) or an HTTP-date; a date in the past gives 0.

    Returns:
        The seconds (at most :data:`MAX_RETRY_AFTER`: a server cannot bench a provider for
        days), or None when the header is absent or unusable.
    """
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return min(max(seconds, 0.0), MAX_RETRY_AFTER) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": RFC 9110 dates are GMT anyway
        when = when.replace(tzinfo=UTC)
    return min(max(when.timestamp() - time.time(), 0.0), MAX_RETRY_AFTER)
