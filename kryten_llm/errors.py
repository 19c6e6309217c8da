"""The one exception tree of kryten-llm.

Errors are split by who has to act on them::

    KrytenLLMError
    ├── ConfigError                 the operator, at startup: names the field and the fix
    ├── TemplateError               a prompt template uses an unknown or non-bare field
    ├── ControlError                an operator's runtime action was refused (``status``)
    ├── BusError                    NATS is unreachable or refused us
    │   ├── MalformedEvent          one bad payload: logged and dropped, never fatal
    │   └── ClusterError            JetStream KV unusable for coordinating instances
    ├── BatchError                  a batch run cannot go on as asked
    │   ├── RunExists                a run with that id is already in the store
    │   ├── RunNotFound              no run has that id
    │   └── InputError               an input file or row cannot be read as asked
    ├── ExploreError                an exploration cannot start or go on as asked
    ├── StoreError                  a state file (claims, memory) cannot be read: names the path
    │   └── MemoryStoreError        the memory file cannot be opened, read or written (``path``)
    ├── SelftestError               ``kryten-llm selftest``: a part did not start, a check failed
    ├── RefusedLate                 a reply's claim was lost or its rate-limit hit could not be
    │                               recorded: nothing of it is said (``pipeline/jobs.py``)
    └── ProviderError               an LLM call failed (carries the provider name)
        ├── retryable (another try or another provider may succeed)
        │   ├── ProviderTimeout
        │   ├── ProviderUnavailable  connection refused, 5xx, garbage body
        │   │   └── UnusableAnswer    a 200 whose answer is empty or all stripped away
        │   └── RateLimited          429, with ``retry_after`` seconds when the server said
        └── fatal (retrying cannot help until someone fixes something)
            ├── AuthFailed           401/403
            ├── BadRequest           400, 404, 413, 422
            └── QuotaExhausted       402 or "credit/usage limit"

Library code says what is wrong in its own terms (a path, a run id, a field); the command line
translates that to its flags.

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


class TemplateError(KrytenLLMError):
    """A template does not parse, or uses a field that is unknown or not a bare name."""


class ControlError(KrytenLLMError):
    """An operator's action was refused; ``status`` is the HTTP status that says why.

    ``errors`` lists ``(path, message, fix)`` when the refusal is an invalid configuration.
    """

    def __init__(
        self, status: int, message: str, *, errors: list[tuple[str, str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.errors = list(errors or [])


class BusError(KrytenLLMError):
    """NATS could not be used (connect, subscribe or publish failed)."""


class MalformedEvent(BusError):
    """A payload on an event subject does not have the shape the bridge publishes."""

    def __init__(self, subject: str, reason: str) -> None:
        self.subject = subject
        self.reason = reason
        super().__init__(f"{subject}: {reason}")


class BatchError(KrytenLLMError):
    """A batch run cannot start or go on as asked."""


class RunExists(BatchError):
    """A run with this id is already in the store."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"a batch run {run_id!r} already exists")


class RunNotFound(BatchError):
    """No run in the store has this id."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no batch run {run_id!r}")


class InputError(BatchError):
    """An input file or one of its rows cannot be read as asked."""


class ExploreError(KrytenLLMError):
    """An exploration cannot start or go on as asked (bad options, a locked folder)."""


class StoreError(KrytenLLMError):
    """A file of the bot's state exists but cannot be used; ``path`` says which."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class MemoryStoreError(StoreError):
    """The memory store at ``path`` cannot be used (corrupt, unreadable or unwritable)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.reason = reason


class SelftestError(KrytenLLMError):
    """A part of the self-test's stack did not start, or a scenario's check failed (the
    message says which and what was seen instead)."""


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


class UnusableAnswer(ProviderUnavailable):
    """A 200 whose answer cannot be used: empty, only whitespace, or all stripped away."""


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


class ClusterError(BusError):
    """JetStream KV could not be used to coordinate with other instances (not enabled,
    no permission, no quorum while a node fails over)."""
