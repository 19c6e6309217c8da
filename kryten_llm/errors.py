"""The one exception tree of kryten-llm.

Errors are split by who has to act on them::

    KrytenLLMError
    ├── ConfigError                 the operator, at startup: names the field and the fix
    ├── BusError                    NATS is unreachable or refused us
    │   └── MalformedEvent          one bad payload: logged and dropped, never fatal
    └── ProviderError               an LLM call failed (carries the provider name)
        ├── retryable (another try or another provider may succeed)
        │   ├── ProviderTimeout
        │   ├── ProviderUnavailable  connection refused, 5xx, garbage body
        │   └── RateLimited          429, with ``retry_after`` seconds when the server said
        └── fatal (retrying cannot help until someone fixes something)
            ├── AuthFailed           401/403
            ├── BadRequest           400, 404, 422
            └── QuotaExhausted       402 or "credit/usage limit"

"Not for us" (a message that fires no trigger, a rate-limited user) is *not* an error: those
are decision values in :mod:`kryten_llm.pipeline.decisions`.
"""

from __future__ import annotations


class KrytenLLMError(Exception):
    """Root of every error raised on purpose by kryten-llm."""


class ConfigError(KrytenLLMError):
    """The configuration cannot be used; ``problems`` lists ``(path, message, fix)``."""

    def __init__(self, problems: list[tuple[str, str, str]]) -> None:
        self.problems = problems
        lines = [f"{path}: {message} -> {fix}" for path, message, fix in problems]
        super().__init__("invalid configuration:\n  " + "\n  ".join(lines))

    def report(self, headline: str) -> str:
        """``headline``, then each problem and its fix indented below: what a CLI prints."""
        body = "".join(f"\n  {where}: {msg}\n      fix: {fix}" for where, msg, fix in self.problems)
        return headline + body


class BusError(KrytenLLMError):
    """NATS could not be used (connect, subscribe or publish failed)."""


class MalformedEvent(BusError):
    """A payload on an event subject does not have the shape the bridge publishes."""

    def __init__(self, subject: str, reason: str) -> None:
        self.subject = subject
        self.reason = reason
        super().__init__(f"{subject}: {reason}")


class ProviderError(KrytenLLMError):
    """An LLM provider call failed."""

    retryable: bool = False

    def __init__(self, provider: str, message: str, *, status: int | None = None) -> None:
        self.provider = provider
        self.status = status
        super().__init__(f"{provider}: {message}")


class ProviderTimeout(ProviderError):
    """The provider did not answer within its time budget."""

    retryable = True


class ProviderUnavailable(ProviderError):
    """Connection refused or reset, a 5xx, or a body that is not a completion."""

    retryable = True


class RateLimited(ProviderError):
    """The provider answered 429; ``retry_after`` is in seconds when it said so."""

    retryable = True

    def __init__(
        self, provider: str, message: str, *, status: int | None = 429, retry_after: float | None
    ) -> None:
        super().__init__(provider, message, status=status)
        self.retry_after = retry_after


class AuthFailed(ProviderError):
    """401/403: the API key is missing, wrong or not allowed to use the model."""


class BadRequest(ProviderError):
    """400/404/422: the request itself is wrong (model name, parameters)."""


class QuotaExhausted(ProviderError):
    """402 or a credit/usage-limit message: no retry until the account is topped up."""
