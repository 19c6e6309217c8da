"""One HTTP call to a provider's API, with the transport failures classified once.

Both API providers (OpenAI-compatible and Anthropic) send JSON and read JSON back over the
service's shared aiohttp session. This helper owns what they have in common: the time budget
(total and per-read, so a slow drip of bytes cannot outlast it), mapping timeouts and
connection errors to :mod:`kryten_llm.errors`, and refusing bodies that are not JSON objects.
Each provider passes its own ``classify`` for HTTP error statuses, because their error bodies
and credit/limit conventions differ.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from kryten_llm.errors import ProviderError, ProviderTimeout, ProviderUnavailable

Classify = Callable[[int, bytes, Mapping[str, str]], ProviderError]


async def request_json(
    session: aiohttp.ClientSession,
    provider: str,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    budget: float,
    classify: Classify,
    body: Any = None,
) -> dict[str, Any]:
    """Send one request and return the JSON object the server answered.

    Args:
        session: the shared client session.
        provider: the provider's name, for error messages.
        method, url, headers, body: the request (``body`` is sent as JSON when given).
        budget: seconds for the whole exchange.
        classify: turns an HTTP status >= 400 with its body and headers into an error.

    Raises:
        ProviderError: ``classify``'s error, ProviderTimeout, or ProviderUnavailable.
    """
    timeout = aiohttp.ClientTimeout(total=budget, sock_read=budget)
    try:
        async with session.request(
            method, url, headers=dict(headers), json=body, timeout=timeout
        ) as response:
            raw = await response.read()
            if response.status >= 400:
                raise classify(response.status, raw, response.headers)
    except ProviderError:
        raise
    except TimeoutError:
        raise ProviderTimeout(provider, f"no answer within {budget:g} s") from None
    except aiohttp.ClientConnectionError as exc:
        raise ProviderUnavailable(provider, f"connection failed: {type(exc).__name__}") from None
    except aiohttp.ClientError as exc:
        raise ProviderUnavailable(provider, f"request failed: {type(exc).__name__}") from None
    try:
        data = json.loads(raw)
    except ValueError:
        raise ProviderUnavailable(provider, "malformed response: not JSON") from None
    if not isinstance(data, dict):
        raise ProviderUnavailable(provider, "malformed response: not a JSON object")
    return data
