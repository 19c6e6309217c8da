"""``kryten-llm selftest``: the whole system started locally and checked end to end.

One command starts an embedded nats-server, the bot (a child process on a scratch config),
the demo's simulated channel and bridge, the scripted provider and an HTTP provider that fails
on purpose, then runs scenarios (a mention answered, spam refused, provider failover, a
fallback-pool line when every provider is down, a batch killed and resumed, an exploration of
two producers) and prints one line per scenario with the trace of ids through the parts that
handled it. :func:`run_selftest` is the entry point; :data:`SCENARIOS` lists the scenarios.
"""

from kryten_llm.selftest.httpprovider import Behaviour
from kryten_llm.selftest.runner import run_selftest
from kryten_llm.selftest.scenario import Result, Scenario, Trace, Verdict
from kryten_llm.selftest.scenarios import SCENARIOS

__all__ = ["SCENARIOS", "Behaviour", "Result", "Scenario", "Trace", "Verdict", "run_selftest"]
