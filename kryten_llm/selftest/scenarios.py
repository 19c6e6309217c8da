"""The self-test's scenarios, in the order they run.

Each is one :class:`~kryten_llm.selftest.scenario.Scenario`: a name, the check (in
:mod:`.live` for the running bot, :mod:`.offline` for ``batch`` and ``explore``) and a time
bound. A new scenario is a check function and one line here.
"""

from __future__ import annotations

from kryten_llm.selftest import live, offline
from kryten_llm.selftest.scenario import Scenario

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("mention -> reply", live.mention_gets_a_reply),
    Scenario("spam refused", live.spam_is_refused),
    Scenario("provider failover", live.provider_failover),
    Scenario("all providers down -> pool line", live.all_down_says_a_pool_line),
    Scenario("config reload (SIGHUP)", live.reload_applies_an_edited_config),
    Scenario("batch 50 rows, SIGKILL, resume", offline.batch_survives_sigkill, 45.0),
    Scenario("explore, 2 producers", offline.explore_two_producers, 25.0),
)
