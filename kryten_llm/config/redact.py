"""Settings and URLs with every secret masked: what may be printed, logged or published."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kryten_llm.config.settings import Settings

MASK = "**********"
# Query parameters that carry credentials in URLs (``?key=...``, ``&access_token=...``).
_SECRET_PARAM = re.compile(r"(?i)([?&][^=&#]*(?:key|token|secret|password|auth)[^=&#]*=)[^&#]*")


def redact_url(url: str) -> str:
    """``url`` with credentials masked: a user part's password, a bare user part (NATS reads
    ``nats://TOKEN@host`` as a token), and credential-like query values."""
    url = re.sub(r"^([a-z][a-z0-9+.-]*://[^:/@]*):[^@/]*@", rf"\1:{MASK}@", url, flags=re.I)
    url = re.sub(r"^([a-z][a-z0-9+.-]*://)[^:/@]+@", rf"\1{MASK}@", url, flags=re.I)
    return _SECRET_PARAM.sub(rf"\g<1>{MASK}", url)


def redacted(settings: Settings) -> dict[str, Any]:
    """The settings as plain data with every secret replaced, safe to print or publish."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    for name, provider in settings.llm.providers.items():
        entry = data["llm"]["providers"][name]
        entry["api_key"] = MASK if provider.resolve_api_key() else None
        entry["headers"] = dict.fromkeys(provider.headers, MASK)
        entry["base_url"] = redact_url(entry["base_url"])
    data["nats"]["servers"] = [redact_url(url) for url in data["nats"]["servers"]]
    for secret in ("password", "token"):
        if data["nats"].get(secret) is not None:
            data["nats"][secret] = MASK
    if data["web"].get("token") is not None:
        data["web"]["token"] = MASK
    return data
