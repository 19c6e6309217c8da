"""Fallback pools: a shuffled rotation without repeats, never the same line twice in a row,
the position saved after every line, several writers on one file."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest

from kryten_llm.errors import ConfigError
from kryten_llm.pools import FallbackPool, personality_pool_name


def filled(folder: Path, count: int, seed: int = 1) -> FallbackPool:
    pool = FallbackPool.load(folder, "films", rng=random.Random(seed))
    assert pool.add([f"line number {i}" for i in range(count)]) == count
    return pool


def test_each_cycle_hands_out_every_line_once(tmp_path: Path) -> None:
    """Every consecutive run of len(pool) lines (from a fresh pool) is a permutation."""
    pool = filled(tmp_path, 7)
    drawn = [pool.next_line() for _ in range(7 * 30)]
    for cycle in range(30):
        assert sorted(drawn[cycle * 7 : cycle * 7 + 7]) == sorted(pool.lines)


@pytest.mark.parametrize("size", [2, 3, 5])
@pytest.mark.parametrize("seed", range(5))
def test_never_the_same_line_twice_in_a_row_across_reshuffles(
    tmp_path: Path, size: int, seed: int
) -> None:
    """Small pools reshuffle often: a cycle never starts with the line that ended the last."""
    pool = filled(tmp_path, size, seed)
    pool.autosave = False
    drawn = [pool.next_line() for _ in range(size * 200)]
    assert all(a != b for a, b in itertools.pairwise(drawn))


def test_a_single_line_pool_repeats_its_line_and_an_empty_one_gives_none(
    tmp_path: Path,
) -> None:
    """The documented edge: one line comes every time (nothing else to say); empty gives None."""
    assert FallbackPool.load(tmp_path, "empty").next_line() is None
    pool = filled(tmp_path, 1)
    assert [pool.next_line() for _ in range(3)] == ["line number 0"] * 3


def test_position_persists_across_reloads(tmp_path: Path) -> None:
    """A reloaded pool finishes the cycle it was in, and does not repeat the last line."""
    pool = filled(tmp_path, 6)
    first = [pool.next_line() for _ in range(4)]
    again = FallbackPool.load(tmp_path, "films", rng=random.Random(99))
    rest = [again.next_line() for _ in range(2)]
    assert sorted(first + rest) == sorted(pool.lines)
    last = rest[-1]
    third = FallbackPool.load(tmp_path, "films", rng=random.Random(5))
    assert third.next_line() != last
    data = json.loads((tmp_path / "films.json").read_text())
    assert data["name"] == "films"
    assert len(data["lines"]) == 6


def test_add_skips_duplicates_and_new_lines_join_the_current_cycle(tmp_path: Path) -> None:
    """Lines equal once normalised are added once; a line added mid-cycle comes in that cycle."""
    pool = filled(tmp_path, 4)
    assert pool.add(["LINE NUMBER 1!", "  ", "line number 2"]) == 0
    drawn = [pool.next_line() for _ in range(2)]
    assert pool.add(["a brand new line"]) == 1
    drawn += [pool.next_line() for _ in range(3)]
    assert sorted(drawn) == sorted(pool.lines)


def test_hand_written_list_is_accepted_and_garbage_is_a_config_error(tmp_path: Path) -> None:
    """A plain JSON list of strings is a pool; anything else names the file and the fix."""
    (tmp_path / "quotes.json").write_text(json.dumps(["one", "two", "One!"]))
    pool = FallbackPool.load(tmp_path, "quotes")
    assert pool.lines == ["one", "two"]
    (tmp_path / "broken.json").write_text("{nope")
    with pytest.raises(ConfigError, match=r"broken\.json"):
        FallbackPool.load(tmp_path, "broken")


def test_pool_names_become_safe_file_names(tmp_path: Path) -> None:
    """Odd names cannot escape the pool folder."""
    pool = FallbackPool.load(tmp_path, "../etc/x y")
    pool.add(["hello"])
    assert pool.path.parent == tmp_path
    assert personality_pool_name("Cynthia Rothbot") == "personality-cynthia-rothbot"


def test_two_pools_on_one_file_keep_each_others_lines(tmp_path: Path) -> None:
    """Two writers (two explore runs) add to one pool file: every save merges what the other
    wrote, in the file's order, with no duplicates once normalised."""
    one = FallbackPool.load(tmp_path, "films", rng=random.Random(1))
    two = FallbackPool.load(tmp_path, "films", rng=random.Random(2))
    one.add(["first of one", "second of one"])
    two.add(["first of two"])
    one.add(["third of one"])
    two.add(["Third of one!", "second of two"])  # the first is one's line, written differently
    expected = ["first of one", "second of one", "first of two", "third of one", "second of two"]
    assert FallbackPool.load(tmp_path, "films").lines == expected
    assert two.lines == expected  # taken in at its saves: they are in its rotation too
    assert sorted(two.next_line() or "" for _ in range(5)) == sorted(expected)


def test_a_failed_save_takes_the_lines_out_again(tmp_path: Path) -> None:
    """add() whose save fails leaves the pool as it was, so adding the lines again saves them."""
    (tmp_path / "pools").write_text("a file where the folder should be")
    pool = FallbackPool(tmp_path / "pools" / "films.json", "films")
    with pytest.raises(FileExistsError):  # mkdir of the pool folder
        pool.add(["one line"])
    assert pool.lines == []
    (tmp_path / "pools").unlink()
    assert pool.add(["one line"]) == 1
    assert FallbackPool.load(tmp_path / "pools", "films").lines == ["one line"]


def test_a_reader_that_follows_its_last_line_never_repeats_it_after_a_reload(
    tmp_path: Path,
) -> None:
    """The bot reads a changed pool file again; its first line then is never its last one."""
    (tmp_path / "quips.json").write_text('["a", "b", "c"]')
    for seed in range(30):
        pool = FallbackPool.load(tmp_path, "quips", rng=random.Random(seed), autosave=False)
        pool.follow("a")
        assert pool.next_line() != "a"
