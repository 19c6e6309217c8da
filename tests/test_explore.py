"""The topic explorer in-process, against real scripted OpenAI-compatible servers on 127.0.0.1.

Each server answers with overlapping lists (fresh items, repeats, case and punctuation variants,
plurals): the explorer must keep only unique items, account for every line it received, and
stop for the right reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kryten_llm.config import LLMConfig, ProviderConfig
from kryten_llm.errors import ExploreError
from kryten_llm.explore import Explorer, ExploreSettings, OutputStore, RunState, StopReason
from kryten_llm.explore.output import Checkpoint
from kryten_llm.explore.producer import ProducerConfig, ProducerState, run_producer
from kryten_llm.llm import Completion, create_provider
from kryten_llm.llm.manager import ProviderManager
from kryten_llm.pools import FallbackPool
from tests.explore_helpers import (
    ItemResponder,
    SameItems,
    assert_counts_add_up,
    assert_no_duplicates,
    read_run,
)
from tests.openai_server import ScriptedOpenAIServer, reply, status


@contextlib.asynccontextmanager
async def servers(*responders: Any) -> AsyncIterator[list[ScriptedOpenAIServer]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(ScriptedOpenAIServer(responder=r)) for r in responders
        ]


def manager_for(
    session: aiohttp.ClientSession, llms: list[ScriptedOpenAIServer], **extra: Any
) -> ProviderManager:
    configs = {
        f"llm{i}": ProviderConfig(type="openai", base_url=llm.base_url, model=f"m{i}", **extra)
        for i, llm in enumerate(llms)
    }
    config = LLMConfig(
        providers=configs,
        default_provider="llm0",
        retry={"attempts": 1, "base_delay_seconds": 0},
    )
    return ProviderManager(
        {name: create_provider(name, cfg, session) for name, cfg in configs.items()}, config
    )


def settings(**overrides: Any) -> ExploreSettings:
    values: dict[str, Any] = {
        "topic": "four-word phrases",
        "producers": 4,
        "min_yield": 0.0,
        "checkpoint_items": 20,
        "checkpoint_seconds": 0.2,
        "request_timeout": 5.0,
        "backoff_seconds": 0.01,
        "seed": 7,
    }
    values.update(overrides)
    return ExploreSettings(**values)


async def test_producers_on_three_servers_keep_only_unique_items(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Four producers over three servers stop at the target; the output has no exact or near
    duplicates, the counters add up, and every server was asked."""
    async with servers(ItemResponder(1), ItemResponder(2), ItemResponder(3)) as llms:
        manager = manager_for(session, llms, price_input_per_million=1.0)
        explorer = Explorer(
            settings(target=150), manager, ["llm0", "llm1", "llm2"], OutputStore(tmp_path)
        )
        reason = await asyncio.wait_for(explorer.run(), 20)
    assert reason is StopReason.TARGET
    items, lines, metadata = read_run(tmp_path)
    assert len(items) == 150
    assert lines == [item["text"] for item in items]
    assert_no_duplicates(lines)
    assert_counts_add_up(metadata, 150)
    counts = metadata["counts"]
    assert counts["exact_duplicates"] > 0
    assert counts["near_duplicates"] > 0
    assert counts["rejected"] > 0  # the header lines
    assert metadata["stop_reason"] == "target"
    assert {item["provider"] for item in items} == {"llm0", "llm1", "llm2"}
    assert {item["model"] for item in items} == {"scripted-model"}
    assert all(item["iteration"] >= 1 and item["time"] for item in items)
    for i, llm in enumerate(llms):
        assert metadata["providers"][f"llm{i}"]["requests"] >= len(llm.completions) - 1
        assert llm.completions, f"server {i} was never asked"
    assert metadata["providers"]["llm0"]["producers"] == ["p0", "p3"]
    assert explorer.state is RunState.STOPPED
    assert metadata["state"] == "stopped"


async def test_prompts_carry_a_bounded_digest_of_known_items(
    session: aiohttp.ClientSession,
) -> None:
    """Later requests name how many items are known and quote some, within the size bound."""
    responder = ItemResponder(5)
    async with servers(responder) as llms:
        explorer = Explorer(
            settings(target=200, producers=1, digest_chars=600),
            manager_for(session, llms),
            ["llm0"],
        )
        await asyncio.wait_for(explorer.run(), 20)
    first, last = responder.prompts[0], responder.prompts[-1]
    assert "Already known" not in first
    assert "Already known:" in last
    assert "\n- " in last
    digest = last.split("\n\n")[1]
    assert len(digest) <= 600


async def test_iterations_bound_the_requests_of_each_producer(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Three producers with four iterations each make exactly twelve requests."""
    async with servers(ItemResponder(1), ItemResponder(2)) as llms:
        explorer = Explorer(
            settings(producers=3, iterations=4),
            manager_for(session, llms),
            ["llm0", "llm1"],
            OutputStore(tmp_path),
        )
        reason = await asyncio.wait_for(explorer.run(), 20)
    assert reason is StopReason.ITERATIONS
    assert len(llms[0].completions) == 8  # p0 and p2
    assert len(llms[1].completions) == 4  # p1
    items, lines, metadata = read_run(tmp_path)
    assert metadata["counts"]["requests"] == 12
    assert_counts_add_up(metadata, len(items))
    assert_no_duplicates(lines)


async def test_low_yield_stops_the_run(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    """A model that keeps repeating itself ends the run once the recent yield is too low."""
    same = SameItems()
    async with servers(same) as llms:
        explorer = Explorer(
            settings(producers=2, min_yield=0.05, yield_window=6),
            manager_for(session, llms),
            ["llm0"],
            OutputStore(tmp_path),
        )
        reason = await asyncio.wait_for(explorer.run(), 20)
    assert reason is StopReason.LOW_YIELD
    items, _, metadata = read_run(tmp_path)
    assert len(items) == 10
    assert 6 <= same.calls <= 10
    assert metadata["stop_reason"] == "low_yield"
    assert_counts_add_up(metadata, 10)


async def test_stop_ends_a_run_without_limits_and_snapshot_shows_it(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """stop() (what Ctrl+C and a dashboard call) ends the run; files are written; the snapshot
    follows the run from running to stopped."""
    async with servers(ItemResponder(9)) as llms:
        explorer = Explorer(settings(), manager_for(session, llms), ["llm0"], OutputStore(tmp_path))
        task = asyncio.create_task(explorer.run())
        for _ in range(400):
            await asyncio.sleep(0.01)
            if explorer.snapshot()["items"] >= 30:
                break
        snap = explorer.snapshot()
        assert snap["state"] == "running"
        assert snap["items"] >= 30
        assert snap["providers"]["llm0"]["new"] >= 30
        explorer.stop()
        explorer.stop()  # harmless twice
        assert await asyncio.wait_for(task, 10) is StopReason.STOPPED
    snap = explorer.snapshot()
    assert snap["state"] == "stopped"
    assert snap["stop_reason"] == "stopped"
    items, lines, metadata = read_run(tmp_path)
    assert len(items) == snap["items"]
    assert metadata["state"] == "stopped"
    assert_counts_add_up(metadata, len(items))
    assert_no_duplicates(lines)


async def test_failing_provider_ends_the_run(session: aiohttp.ClientSession) -> None:
    """A provider that refuses the key fails its producers: the run stops, reason given."""
    async with contextlib.AsyncExitStack() as stack:
        bad = await stack.enter_async_context(ScriptedOpenAIServer(default=status(401)))
        explorer = Explorer(settings(producers=2), manager_for(session, [bad]), ["llm0"])
        reason = await asyncio.wait_for(explorer.run(), 10)
    assert reason is StopReason.PROVIDERS_FAILED
    snap = explorer.snapshot()
    assert all(p["state"] == "failed" for p in snap["producers"])
    assert snap["counts"]["failures"] == 2


async def test_resume_reloads_known_items_and_never_repeats_them(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A second run on the same folder starts from the first one's items and adds new ones."""
    store = OutputStore(tmp_path)
    async with servers(ItemResponder(1), ItemResponder(2)) as llms:
        first = Explorer(settings(target=60), manager_for(session, llms), ["llm0", "llm1"], store)
        await asyncio.wait_for(first.run(), 20)
        before, _, _ = read_run(tmp_path)
        checkpoint = store.load()
        assert checkpoint is not None
        second = Explorer(settings(target=120), manager_for(session, llms), ["llm0", "llm1"], store)
        second.resume_from(checkpoint)
        assert await asyncio.wait_for(second.run(), 20) is StopReason.TARGET
    items, lines, metadata = read_run(tmp_path)
    assert items[:60] == before
    assert len(items) == 120
    assert_no_duplicates(lines)
    assert_counts_add_up(metadata, 120)
    assert metadata["sessions"] == 2
    assert metadata["resumed_items"] == 60


async def test_new_items_fill_a_fallback_pool(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """With a pool, accepted new items are added to it (and saved) at each checkpoint."""
    pool = FallbackPool.load(tmp_path / "fallback", "films")
    async with servers(ItemResponder(4)) as llms:
        explorer = Explorer(
            settings(target=40),
            manager_for(session, llms),
            ["llm0"],
            OutputStore(tmp_path / "out"),
            pool=pool,
            pool_filter=lambda line: "velvet" not in line,
        )
        await asyncio.wait_for(explorer.run(), 20)
    reloaded = FallbackPool.load(tmp_path / "fallback", "films")
    expected = [i["text"] for i in explorer.items if "velvet" not in i["text"]]
    assert reloaded.lines == expected
    assert len(reloaded) > 0


async def test_scripted_word_list_mode_repeats_on_purpose(session: aiohttp.ClientSession) -> None:
    """model "wordlist": ten 2-3 word lines per answer, some repeated, reproducible by name;
    replies, when given, are the word list."""
    from kryten_llm.llm import ChatMessage, CompletionRequest
    from kryten_llm.llm.scripted import ScriptedProvider

    request = CompletionRequest((ChatMessage("user", "list things"),))

    async def answers(name: str, **extra: Any) -> list[str]:
        provider = ScriptedProvider(
            name, ProviderConfig(type="scripted", model="wordlist", **extra), session
        )
        assert await provider.probe(1) == "word list"
        return [(await provider.complete(request)).text for _ in range(10)]

    texts = await answers("a")
    assert texts == await answers("a")
    lines = [line.removeprefix("- ") for text in texts for line in text.splitlines()]
    assert len(lines) == 100
    assert all(2 <= len(line.split()) <= 3 for line in lines)
    assert len({line.casefold().rstrip("!s") for line in lines}) < 90  # deliberate repeats
    own = await answers("b", replies=["zork", "quux"])
    words = {w.casefold().rstrip("!s") for text in own for w in text.replace("- ", "").split()}
    assert words <= {"zork", "quux", "quu"}  # "quux" + "s" is a plural variant


async def test_stop_before_run_writes_the_files_and_returns_the_reason(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A stop that comes before run() (Ctrl+C during start-up) is not an error: run() asks
    nothing, writes the files and returns the reason."""
    async with servers(ItemResponder(1)) as llms:
        explorer = Explorer(settings(), manager_for(session, llms), ["llm0"], OutputStore(tmp_path))
        explorer.stop(StopReason.INTERRUPTED)
        assert await asyncio.wait_for(explorer.run(), 10) is StopReason.INTERRUPTED
        assert not llms[0].completions
    assert explorer.state is RunState.STOPPED
    items, _, metadata = read_run(tmp_path)
    assert items == []
    assert metadata["stop_reason"] == "interrupted"
    assert metadata["state"] == "stopped"
    with pytest.raises(RuntimeError, match="runs once"):
        await explorer.run()


class FailingOnce(OutputStore):
    """A store whose first write fails as a full disk would."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.failed = False

    def write(self, checkpoint: Checkpoint, metadata: dict[str, Any]) -> None:
        if not self.failed:
            self.failed = True
            raise OSError(28, "No space left on device")
        super().write(checkpoint, metadata)


class PoolFailingOnce(FallbackPool):
    """A pool whose first save fails."""

    failed = False

    def save(self) -> None:
        if not self.failed:
            self.failed = True
            raise OSError(28, "No space left on device")
        super().save()


@pytest.mark.parametrize("failing", ["store", "pool"])
async def test_a_failed_checkpoint_keeps_its_pool_lines_for_the_next_one(
    session: aiohttp.ClientSession, tmp_path: Path, failing: str
) -> None:
    """A checkpoint that cannot be written (the output or the pool) loses nothing: a later
    one writes the pool lines the failed one held, even when no new pool line came since."""
    store = FailingOnce(tmp_path / "out") if failing == "store" else OutputStore(tmp_path / "out")
    pool_class = PoolFailingOnce if failing == "pool" else FallbackPool
    pool = pool_class(tmp_path / "fallback" / "films.json", "films")
    accepted: list[str] = []

    def first_five(line: str) -> bool:  # every pool line is in the first (failing) checkpoint
        if len(accepted) < 5:
            accepted.append(line)
            return True
        return False

    async with servers(ItemResponder(4)) as llms:
        explorer = Explorer(
            settings(target=80, producers=1, checkpoint_items=10),
            manager_for(session, llms),
            ["llm0"],
            store,
            pool=pool,
            pool_filter=first_five,
        )
        assert await asyncio.wait_for(explorer.run(), 20) is StopReason.TARGET
    assert store.failed if isinstance(store, FailingOnce) else pool.failed  # type: ignore[attr-defined]
    assert FallbackPool.load(tmp_path / "fallback", "films").lines == accepted
    assert len(read_run(tmp_path / "out")[0]) == 80


class SlowStore(OutputStore):
    """A store on a slow disk: every write takes ``seconds``; it records when each ran."""

    def __init__(self, folder: Path, seconds: float, enough: int) -> None:
        super().__init__(folder)
        self.seconds = seconds
        self.writes: list[tuple[float, float]] = []
        self.enough = threading.Event()  # set after ``enough`` writes
        self._count = enough

    def write(self, checkpoint: Checkpoint, metadata: dict[str, Any]) -> None:
        start = time.monotonic()
        time.sleep(self.seconds)
        super().write(checkpoint, metadata)
        self.writes.append((start, time.monotonic()))
        if len(self.writes) >= self._count:
            self.enough.set()


async def test_checkpoints_slow_down_when_writing_gets_slow(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Each checkpoint rewrites the whole run: after a write that took W seconds, the next one
    waits at least 10 W, even when the settings ask for one per item and per millisecond."""
    store = SlowStore(tmp_path, 0.03, enough=4)
    async with servers(ItemResponder(2)) as llms:
        explorer = Explorer(
            settings(checkpoint_items=1, checkpoint_seconds=0.001, producers=2),
            manager_for(session, llms),
            ["llm0"],
            store,
        )
        task = asyncio.create_task(explorer.run())
        assert await asyncio.to_thread(store.enough.wait, 20)
        explorer.stop()
        await asyncio.wait_for(task, 10)
    periodic = store.writes[:4]  # the final write of a stop comes when it must
    for (start, end), (next_start, _) in itertools.pairwise(periodic):
        # A lower bound only: a slow machine makes the pauses longer, never shorter.
        assert next_start - end >= 10 * (end - start) * 0.95, store.writes
    assert explorer.metadata()["items"] == len(read_run(tmp_path)[0])


async def test_an_answer_that_arrives_after_the_stop_is_paid_for_but_not_used(
    session: aiohttp.ClientSession,
) -> None:
    """The run stops while a request is in flight: the producer drops the answer's items but
    hands it over to be counted (its tokens and cost were paid for)."""
    ingested: list[Completion] = []
    discarded: list[Completion] = []
    async with servers(ItemResponder(1)) as llms:
        llms[0].push(reply("- late item", usage={"prompt_tokens": 7, "completion_tokens": 3}))
        state = ProducerState(name="p0", provider="llm0")
        await asyncio.wait_for(
            run_producer(
                state,
                ProducerConfig(topic="t"),
                manager_for(session, llms),
                digest=lambda: "",
                ingest=lambda _state, completion: ingested.append(completion),
                discard=lambda _state, completion: discarded.append(completion),
                # Not stopping before the request; stopping once the server has seen it.
                stopping=lambda: bool(llms[0].completions),
            ),
            10,
        )
    assert ingested == []
    (late,) = discarded
    assert late.usage is not None
    assert (late.usage.prompt_tokens, late.usage.completion_tokens) == (7, 3)
    assert state.state == "stopped"


def test_one_run_at_a_time_holds_an_output_folder(tmp_path: Path) -> None:
    """A second store cannot lock a folder another holds (an ExploreError caused by the busy
    lock); once the first lets go, it can."""
    first, second = OutputStore(tmp_path / "run"), OutputStore(tmp_path / "run")
    first.lock()
    first.lock()  # idempotent
    with pytest.raises(ExploreError, match="another explore run") as caught:
        second.lock()
    assert isinstance(caught.value.__cause__, BlockingIOError)
    first.unlock()
    second.lock()
    second.unlock()


def test_load_removes_only_its_own_leftover_temp_files(tmp_path: Path) -> None:
    """The temp files of an interrupted write of output.json, output.txt or metadata.json are
    swept; other files that merely look like temp files (``--output .``) are left alone."""
    ours = [".output.json.k2j4_x9a.tmp", ".output.txt.abcdefgh.tmp", ".metadata.json.q.tmp"]
    others = [".foo.tmp", ".films.json.abcdefgh.tmp", "notes.tmp", ".output.json"]
    for name in ours + others:
        (tmp_path / name).write_text("x")
    assert OutputStore(tmp_path).load() is None
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(others)
