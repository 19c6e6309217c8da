"""Batch inputs: every format read as rows, JSON arrays streamed, templates checked up front."""

from __future__ import annotations

import io
import json
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from kryten_llm.batch import run_batch
from kryten_llm.batch.inputs import count_rows, iter_json_array, read_rows
from kryten_llm.batch.templates import PromptTemplate
from kryten_llm.errors import ConfigError, InputError
from tests.batch_helpers import batch_settings, cli, write_config
from tests.openai_server import ScriptedOpenAIServer


def test_txt_gives_one_prompt_per_nonblank_line(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_text("first line\n\n  second, with comma \r\nthird", encoding="utf-8")
    assert list(read_rows(path)) == [
        {"prompt": "first line"},
        {"prompt": "  second, with comma "},
        {"prompt": "third"},
    ]


def test_csv_rows_keep_columns_quotes_and_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text('\ufefftitle,body\n"A, B","line one\nline two"\nC,D\n', encoding="utf-8")
    assert list(read_rows(path)) == [
        {"title": "A, B", "body": "line one\nline two"},
        {"title": "C", "body": "D"},
    ]


def test_jsonl_rows_skip_blank_lines_and_name_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"q": 1}\n\n{"q": 2}\n', encoding="utf-8")
    assert list(read_rows(path)) == [{"q": 1}, {"q": 2}]
    path.write_text('{"q": 1}\n{"q": \n', encoding="utf-8")
    with pytest.raises(InputError, match="line 2"):
        list(read_rows(path))


def test_json_array_of_objects_and_strings(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text('[{"prompt": "a", "n": 1}, "just text", {"prompt": "c"}]', encoding="utf-8")
    assert list(read_rows(path)) == [
        {"prompt": "a", "n": 1},
        {"prompt": "just text"},
        {"prompt": "c"},
    ]
    assert count_rows(path) == 3
    assert list(read_rows(path, limit=2))[-1] == {"prompt": "just text"}


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
def test_json_array_elements_cut_by_chunk_boundaries_decode_whole(chunk: int) -> None:
    """Strings, numbers and literals split across reads come out exactly as json.loads."""
    values = [{"a": "x" * 10, "n": 12345}, 678, True, None, "é ü", [1, [2]], -1.5e3, {}]
    text = " [ " + " , ".join(json.dumps(v) for v in values) + " ] "
    assert list(iter_json_array(io.StringIO(text), chunk_size=chunk)) == values


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param('{"a": 1}', "not a JSON array", id="object"),
        pytest.param('[{"a": 1}, {"a": 2}', "not closed", id="unclosed"),
        pytest.param('[{"a": 1} {"a": 2}]', "expected ','", id="missing-comma"),
        pytest.param('[{"a": }]', "element 0", id="bad-element"),
        pytest.param("", "not a JSON array", id="empty"),
    ],
)
def test_malformed_json_arrays_are_config_errors(text: str, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        list(iter_json_array(io.StringIO(text), chunk_size=4))


def test_a_bad_element_first_in_a_large_array_fails_at_once_in_bounded_memory(
    tmp_path: Path,
) -> None:
    """A malformed element is reported where it is, without reading on: the reader used to
    retry after every decoding error, pulling the whole file into its buffer first."""
    path = tmp_path / "big.json"
    element = json.dumps({"prompt": "p" * 200, "id": 1})
    with path.open("w", encoding="utf-8") as file:
        file.write('[{"prompt": "a" x}')
        for _ in range(40_000):  # ~9 MB after it
            file.write("," + element)
        file.write("]")
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as caught:
            list(read_rows(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "element 0: Expecting ',' delimiter (at offset 16)" in str(caught.value)
    assert peak < 2_000_000, f"peak {peak} bytes for a 9 MB file"


def test_an_unterminated_string_at_the_end_of_a_chunk_is_read_on() -> None:
    long = "s" * 100
    text = json.dumps([{"a": long}, {"b": "\\u00e9\\ud83d\\ude00"}, "x"])
    for chunk in (5, 16, 50, 99):
        values = list(iter_json_array(io.StringIO(text), chunk_size=chunk))
        assert values == json.loads(text), chunk


def test_empty_json_array_has_no_rows() -> None:
    assert list(iter_json_array(io.StringIO(" [ ] "))) == []


def test_json_array_streams_in_bounded_memory() -> None:
    """A 20 MB array is decoded with a peak far below its size (the buffer is trimmed)."""
    element = json.dumps({"prompt": "p" * 200, "id": 1})

    class Generated(io.TextIOBase):
        """20 MB of JSON produced on the fly, never held whole."""

        def __init__(self, count: int) -> None:
            self._left = count
            self._started = False
            self._pending = ""

        def read(self, size: int | None = -1) -> str:
            wanted = size if size and size > 0 else 1 << 16
            while len(self._pending) < wanted and (self._left or not self._started):
                if not self._started:
                    self._pending += "["
                    self._started = True
                self._left -= 1
                self._pending += element + ("," if self._left else "]")
            out, self._pending = self._pending[:wanted], self._pending[wanted:]
            return out

    count = 20_000_000 // len(element)
    tracemalloc.start()
    try:
        stream: Any = Generated(count)
        seen = sum(1 for _ in iter_json_array(stream))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count
    assert peak < 2_000_000, f"peak {peak} bytes for a 20 MB array"


def test_xlsx_rows_from_the_first_sheet(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["title", "year"])
    sheet.append(["Plan 9", 1957])
    sheet.append([None, None])
    sheet.append(["Eraserhead", 1977])
    path = tmp_path / "in.xlsx"
    book.save(path)
    assert list(read_rows(path)) == [
        {"title": "Plan 9", "year": 1957},
        {"title": "Eraserhead", "year": 1977},
    ]


def test_xlsx_without_openpyxl_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "in.xlsx"
    path.write_bytes(b"PK")
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # import now raises ImportError
    with pytest.raises(ConfigError) as caught:
        list(read_rows(path))
    assert "pip install 'kryten-llm[xlsx]'" in str(caught.value)


def test_unknown_extension_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    path.write_text("x")
    with pytest.raises(InputError, match="unknown input format"):
        list(read_rows(path))


def test_template_names_the_missing_variable_and_lists_the_columns() -> None:
    template = PromptTemplate("Review {title} from {yeer}")
    with pytest.raises(ConfigError) as caught:
        template.check(["title", "year"])
    message = str(caught.value)
    assert "'yeer'" in message
    assert "title, year" in message
    template.check(["title", "yeer"])  # no error
    assert PromptTemplate("{a} and {{literal}}").render({"a": 1}) == "1 and {literal}"


def test_template_must_name_columns() -> None:
    with pytest.raises(ConfigError, match="malformed"):
        PromptTemplate("positional {}")
    with pytest.raises(ConfigError, match="malformed"):
        PromptTemplate("unclosed {title")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("{title:d}", id="format-spec-ValueError"),
        pytest.param("{title:{nope}}", id="nested-field-KeyError"),
        pytest.param("{title.x}", id="attribute-AttributeError"),
        pytest.param("{title.upper}", id="attribute-leaks-method"),
        pytest.param("{title.__class__}", id="attribute-leaks-class"),
        pytest.param("{title[0]}", id="index"),
        pytest.param("{title!r}", id="conversion"),
        pytest.param("{title:>10}", id="harmless-spec"),
        pytest.param("{0}", id="positional"),
    ],
)
def test_template_allows_only_plain_column_names(text: str) -> None:
    """Anything but ``{column}`` is refused when the template is built, before any request
    (it used to fail mid-run with a traceback, or put Python internals in the prompt)."""
    with pytest.raises(ConfigError, match="malformed template"):
        PromptTemplate(text)


async def test_cli_bad_template_spec_exits_2_before_any_request(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"title": "Plan 9"}\n')
    async with ScriptedOpenAIServer() as llm:
        result = await cli(
            "in.jsonl",
            "--template",
            "{title:d}",
            "--provider",
            f"openai:{llm.base_url}",
            "--config",
            str(write_config(tmp_path)),
            cwd=tmp_path,
        )
        assert result.code == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert "may not have a conversion or format spec" in result.stderr
        assert llm.completions == []


def test_template_renders_columns_with_spaces_and_none() -> None:
    template = PromptTemplate("{my title}: {body}")
    assert template.render({"my title": "A", "body": None}) == "A: "


async def test_template_error_stops_the_batch_before_any_request(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("title,year\nPlan 9,1957\n")
    async with ScriptedOpenAIServer() as llm:
        with pytest.raises(ConfigError, match="'body'"):
            await run_batch(
                path,
                template="Summarise {body}",
                providers=[f"openai:{llm.base_url}"],
                db=str(tmp_path / "b.db"),
                settings=batch_settings(tmp_path),
            )
        assert llm.completions == []


async def test_cli_template_error_exits_2_naming_variable_and_columns(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"title": "Plan 9", "year": 1957}\n')
    async with ScriptedOpenAIServer() as llm:
        result = await cli(
            "in.jsonl",
            "--template",
            "Tell me about {titel}",
            "--provider",
            f"openai:{llm.base_url}",
            "--config",
            str(write_config(tmp_path)),
            cwd=tmp_path,
        )
        assert result.code == 2, result.stderr
        assert "'titel'" in result.stderr
        assert "title, year" in result.stderr
        assert llm.completions == []


async def test_each_input_format_reaches_the_model(tmp_path: Path) -> None:
    """The same three questions, from each format, arrive at the server as prompts."""
    questions = ["one?", "two, too?", "three?"]
    files = {
        "txt": "\n".join(questions) + "\n",
        "csv": "q\n" + "\n".join(f'"{q}"' for q in questions) + "\n",
        "json": json.dumps([{"q": q} for q in questions]),
        "jsonl": "".join(json.dumps({"q": q}) + "\n" for q in questions),
    }
    async with ScriptedOpenAIServer() as llm:
        for fmt, text in files.items():
            path = tmp_path / f"in.{fmt}"
            path.write_text(text, encoding="utf-8")
            result = await run_batch(
                path,
                template=None if fmt == "txt" else "Q: {q}",
                providers=[f"openai:{llm.base_url}"],
                db=str(tmp_path / "b.db"),
                settings=batch_settings(tmp_path),
                no_log=True,
            )
            assert result.status == "completed"
            answers = sorted(r["response"] for r in result.records())
            prefix = "" if fmt == "txt" else "Q: "
            assert answers == sorted(f"echo: {prefix}{q}" for q in questions), fmt
