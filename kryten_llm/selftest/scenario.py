"""What a self-test scenario is, and what running one gives: small typed records.

A :class:`Scenario` is a name, an async check and a time bound; adding one to
:data:`kryten_llm.selftest.scenarios.SCENARIOS` is a few lines. The check drives the
:class:`~kryten_llm.selftest.stack.Stack`, notes each component that handled its input on a
:class:`Trace` as it goes (so a failure still shows how far the input got), and raises
:class:`~kryten_llm.errors.SelftestError` saying what it saw instead of what it expected.
:func:`run_scenario` turns that into a :class:`Result`, whose :meth:`Result.line` is the one
line the self-test prints.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from kryten_llm.errors import SelftestError

if TYPE_CHECKING:
    from kryten_llm.selftest.stack import Stack


class Verdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"


@dataclass(slots=True)
class Trace:
    """The hops an input took through the system, in order (``sim chatMsg 1a2b3c4d``...)."""

    hops: list[str] = field(default_factory=list)

    def hop(self, text: str) -> None:
        self.hops.append(text)


Check = Callable[["Stack", Trace], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Scenario:
    """One thing the whole system must do; ``check`` raises SelftestError when it does not."""

    name: str
    check: Check
    timeout_seconds: float = 20.0


@dataclass(frozen=True, slots=True)
class Result:
    """How one scenario went."""

    name: str
    verdict: Verdict
    seconds: float
    trace: tuple[str, ...]
    problem: str | None = None

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASS

    def line(self, name_width: int = 0) -> str:
        """``PASS  mention -> reply   0.31 s  sim chatMsg 1a2b3c4d > ...`` (FAIL: why first)."""
        text = f"{self.verdict}  {self.name.ljust(name_width)}  {self.seconds:5.2f} s  "
        if self.problem is not None:
            text += f"{self.problem}; trace: "
        return text + (" > ".join(self.trace) or "nothing reached")


def expect(condition: bool, problem: str) -> None:
    """Raise :class:`SelftestError` with ``problem`` unless ``condition`` holds."""
    if not condition:
        raise SelftestError(problem)


async def run_scenario(scenario: Scenario, stack: Stack) -> Result:
    """Run one scenario within its time bound; never raises for a failed check."""
    trace = Trace()
    started = time.monotonic()
    problem: str | None = None
    try:
        async with asyncio.timeout(scenario.timeout_seconds):
            await scenario.check(stack, trace)
    except SelftestError as exc:
        problem = str(exc)
    except TimeoutError:
        problem = f"not finished within {scenario.timeout_seconds:g} s"
    except Exception as exc:  # a crash in a check is this scenario's failure, not the run's
        problem = f"{type(exc).__name__}: {exc}"
    return Result(
        scenario.name,
        Verdict.PASS if problem is None else Verdict.FAIL,
        time.monotonic() - started,
        tuple(trace.hops),
        problem,
    )
