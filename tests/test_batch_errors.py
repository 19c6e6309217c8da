"""Bad inputs and paths are one-line errors saying what to fix, never tracebacks."""

from __future__ import annotations

import contextlib
import sqlite3
import zipfile
from pathlib import Path

import pytest

from kryten_llm.batch import run_batch
from kryten_llm.batch.inputs import read_rows
from kryten_llm.batch.options import BatchOptions
from kryten_llm.config import load_settings
from kryten_llm.errors import ConfigError, InputError
from tests.batch_helpers import FAST_RETRY, cli, write_config
from tests.openai_server import ScriptedOpenAIServer


def test_a_csv_cell_over_128_kib_is_read(tmp_path: Path) -> None:
    """The csv module's default cell limit (128 KiB) is raised: a long document is a prompt."""
    path = tmp_path / "in.csv"
    long = "x" * 200_000
    path.write_text(f'title,body\nA,"{long}"\n', encoding="utf-8")
    assert list(read_rows(path)) == [{"title": "A", "body": long}]


def test_a_csv_cell_over_the_raised_limit_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    with path.open("w", encoding="utf-8") as file:
        file.write('title,body\nA,"')  # a runaway quote swallows the rest of the file
        for _ in range(17):
            file.write("y" * (1 << 20))
        file.write("\n")
    with pytest.raises(InputError) as caught:
        list(read_rows(path))
    assert "field larger than field limit" in str(caught.value)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("kind", ["garbage", "zip-not-xlsx"])
def test_a_corrupt_xlsx_is_an_input_error(tmp_path: Path, kind: str) -> None:
    pytest.importorskip("openpyxl")
    path = tmp_path / "in.xlsx"
    if kind == "garbage":
        path.write_bytes(b"PK\x03\x04 this is not really a zip")
    else:
        with zipfile.ZipFile(path, "w") as book:
            book.writestr("hello.txt", "no workbook parts here")
    with pytest.raises(InputError, match=r"not a readable \.xlsx workbook"):
        list(read_rows(path))


async def test_cli_corrupt_xlsx_exits_2_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("openpyxl")
    (tmp_path / "in.xlsx").write_bytes(b"not a zip at all")
    result = await cli("in.xlsx", "--config", str(write_config(tmp_path)), cwd=tmp_path)
    assert result.code == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "not a readable .xlsx workbook" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("in.txt",), id="run"),
        pytest.param(("list",), id="list"),
        pytest.param(("status", "x"), id="status"),
        pytest.param(("cancel", "x"), id="cancel"),
    ],
)
async def test_cli_db_in_a_missing_directory_exits_2(tmp_path: Path, args: tuple[str, ...]) -> None:
    (tmp_path / "in.txt").write_text("a\n")
    config = str(write_config(tmp_path))
    result = await cli(*args, "--db", "nodir/b.db", "--config", config, cwd=tmp_path)
    assert result.code == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "--db: cannot open the run store nodir/b.db" in result.stderr


async def test_an_unwritable_item_log_stops_the_batch_before_it_starts(tmp_path: Path) -> None:
    """The log directory is created and the file opened at startup: a failure is a
    ConfigError before any request or stored run (it used to fail inside a worker)."""
    (tmp_path / "afile").write_text("a file, not a directory")
    settings = load_settings(
        None,
        llm={"retry": FAST_RETRY},
        logging={"response_log_dir": str(tmp_path / "afile" / "logs")},
    )
    db = tmp_path / "b.db"
    async with ScriptedOpenAIServer() as llm:
        with pytest.raises(ConfigError) as caught:
            await run_batch(
                ["q"], providers=[f"openai:{llm.base_url}"], settings=settings, db=str(db)
            )
        assert llm.completions == []
    assert "logging.response_log_dir" in str(caught.value)
    assert "the no_log option" in str(caught.value)  # the library's name; the CLI's is --no-log
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT count(*) FROM batch_runs").fetchone() == (0,)


async def test_the_item_log_directory_is_created(tmp_path: Path) -> None:
    settings = load_settings(
        None, logging={"response_log_dir": str(tmp_path / "deep" / "er" / "logs")}
    )
    result = await run_batch(
        ["q"], providers=["scripted"], settings=settings, db=str(tmp_path / "b.db")
    )
    log = tmp_path / "deep" / "er" / "logs" / f"batch-{result.batch_id}.jsonl"
    assert log.read_text(encoding="utf-8").count("\n") == 1


@pytest.mark.parametrize(
    "batch_id", ["../../escaped", "a/b", ".hidden", "", "x" * 65, "sp ace", "é"]
)
def test_a_batch_id_that_could_name_another_path_is_refused(batch_id: str) -> None:
    with pytest.raises(ConfigError, match="not a valid batch id"):
        BatchOptions(batch_id=batch_id)


def test_ordinary_batch_ids_are_accepted() -> None:
    for batch_id in ("b20250101-120000-abcdef", "job1", "Run_2.v3", "x" * 64):
        assert BatchOptions(batch_id=batch_id).batch_id == batch_id


async def test_cli_batch_id_with_a_path_exits_2_and_writes_nothing_outside(
    tmp_path: Path,
) -> None:
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    (work / "in.txt").write_text("q\n")
    config = str(write_config(work))
    result = await cli("in.txt", "--config", config, "--batch-id", "../../escaped", cwd=work)
    assert result.code == 2, result.stderr
    assert "not a valid batch id" in result.stderr
    assert not _named_like(tmp_path, "*escaped*")


def _named_like(root: Path, pattern: str) -> list[Path]:
    return list(root.rglob(pattern))
