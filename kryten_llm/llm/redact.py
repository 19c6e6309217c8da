"""Keep a provider's secrets out of every error text, log line and health snapshot.

Error texts travel far: ``last_error`` is in ``/health``, heartbeats and the dashboard, and
every failure is logged. Servers echo what they were sent (a masked key, a header, the URL),
so whatever a provider sends that could be a credential is blanked out of the texts derived
from its answers. This module is the one implementation; :mod:`kryten_llm.llm.http` applies it
to everything an API provider raises (before a server's message is cut to length, so a secret
cannot leak half-cut), and :class:`kryten_llm.llm.manager.ProviderManager` applies it again to
every error any provider raises (plugins, local) before recording or logging it.

Secrets of a provider:

- the API key (``api_key`` or the variable named by ``api_key_env``);
- every value of its ``headers`` config and of the headers a request sends (except a few
  protocol headers, such as ``content-type``), and the credential after an auth scheme
  (``Bearer X`` -> ``X``; ``Basic B64`` -> ``B64``, the decoded ``user:pass`` and ``pass``);
- credentials in ``base_url`` (``https://user:pass@host``): ``user:pass``, the password, in
  plain and percent-encoded forms, and ``base64(user:pass)`` as a Basic auth header carries it.

Longer secrets are replaced first, so a key that contains another secret leaves no trace.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from kryten_llm.config import ProviderConfig
    from kryten_llm.errors import ProviderError

MASK = "[redacted]"

# Headers whose values are protocol, not credentials: blanking them would only garble messages.
_PLAIN_HEADERS = frozenset(
    {"accept", "anthropic-version", "content-type", "user-agent", "openai-beta"}
)


class Redactor:
    """Blanks out a fixed set of secrets from texts.

    Args:
        secrets: the values to hide; empty strings are ignored.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    @classmethod
    def for_config(cls, config: ProviderConfig) -> Redactor:
        """The secrets a provider's configuration holds (see the module docstring).

        Args:
            config: the provider's config slice.

        Returns:
            A redactor for them.
        """
        return cls(_config_secrets(config))

    @classmethod
    def for_request(cls, url: str, headers: Mapping[str, str]) -> Redactor:
        """The secrets one HTTP request carries: URL credentials and header values.

        Args:
            url: the URL called.
            headers: the headers sent.

        Returns:
            A redactor for them.
        """
        found = list(_url_secrets(url))
        for name, value in headers.items():
            if name.lower() not in _PLAIN_HEADERS:
                found.extend(_header_secrets(value))
        return cls(found)

    def __or__(self, other: Redactor) -> Redactor:
        return Redactor([*self._secrets, *other._secrets])

    def __call__(self, text: str) -> str:
        """``text`` with every secret replaced by ``[redacted]``.

        Args:
            text: any text derived from a provider's answer.

        Returns:
            The text without secrets.
        """
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def scrub(self, error: ProviderError) -> ProviderError:
        """Redact ``error``'s message in place (it is raised on) and return it.

        Args:
            error: an error about to be raised, recorded or logged.

        Returns:
            The same error.
        """
        if self._secrets:
            error.args = tuple(self(a) if isinstance(a, str) else a for a in error.args)
        return error


def _config_secrets(config: ProviderConfig) -> list[str]:
    found = list(_url_secrets(config.base_url))
    key = config.resolve_api_key()
    if key:
        found.append(key)
    for value in config.headers.values():
        found.extend(_header_secrets(value))
    return found


def _url_secrets(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:
        return []
    if not user and not password:
        return []
    found: list[str] = []
    userinfo = parts.netloc.rpartition("@")[0]
    for u, p in ((user or "", password or ""), (unquote(user or ""), unquote(password or ""))):
        pair = f"{u}:{p}"
        found += [p, pair, base64.b64encode(pair.encode("latin-1", "replace")).decode()]
        found.append(base64.b64encode(pair.encode()).decode())
    found.append(userinfo)
    return found


def _header_secrets(value: str) -> list[str]:
    found = [value]
    scheme, _, credential = value.strip().partition(" ")
    credential = credential.strip()
    if not credential:
        return found
    found.append(credential)
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credential, validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            return found
        found.append(decoded)
        found.append(decoded.partition(":")[2])
    return found
