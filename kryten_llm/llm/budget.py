"""How much of a reply's deadline one provider call may use.

One deadline (the reply's, 45 s by default) bounds every call, wait and retry of a request,
and :class:`~kryten_llm.llm.manager.ProviderManager` gives each attempt its own budget inside
it, so that one hanging provider cannot eat the whole deadline while a later one could still
answer::

    budget = min(own timeout, max(left - reserve, left / (1 + later)))

- ``own timeout``: the request's ``timeout_seconds`` when the caller set one, else the
  provider's configured ``timeout_seconds``;
- ``left``: the time to the deadline less :data:`MARGIN_SECONDS`, so that the manager's own
  timeout fires (and is counted against the provider, towards opening its circuit) before the
  caller's deadline cancels everything;
- ``later``: the providers after this one in the chain that could be asked now (not open,
  cooling or misconfigured);
- ``reserve``: for each of them ``min(its timeout, RESERVE_SECONDS)``; 5 s is what a healthy
  provider needs to answer a chat reply.

The reserve never takes more than an equal share from the provider being asked: with 4 s left
and one provider after it, each gets 2 s. So a primary configured with ``timeout_seconds: 3``
that never answers is abandoned after ~3 s and the backup answers; a primary with a 60 s
timeout under a 45 s deadline is abandoned after 40 s, leaving its backup 5 s. A provider that
ignores its budget is stopped by the manager :data:`BACKSTOP_SECONDS` after it.
"""

from __future__ import annotations

from collections.abc import Iterable

RESERVE_SECONDS = 5.0
MARGIN_SECONDS = 0.1
BACKSTOP_SECONDS = 0.05


def attempt_budget(own: float, left: float, later: Iterable[float]) -> float:
    """Seconds one attempt may take (the formula in the module docstring).

    Args:
        own: the attempt's own cap (request or provider ``timeout_seconds``).
        left: seconds to the deadline, less the margin; must be > 0.
        later: the configured timeouts of the providers after this one that could be asked.

    Returns:
        The budget, > 0 when ``left`` is.
    """
    timeouts = list(later)
    reserve = sum(min(t, RESERVE_SECONDS) for t in timeouts)
    return min(own, max(left - reserve, left / (1 + len(timeouts))))
