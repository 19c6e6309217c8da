"""The command line's front door: fast, and only as heavy as the command asked for."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version

import kryten_llm


def test_the_version_constant_is_the_packages_version() -> None:
    """``__version__`` is a constant (no metadata lookup at import) that must match pyproject."""
    assert kryten_llm.__version__ == version("kryten-llm")


def _modules_after(argv: list[str]) -> set[str]:
    """The kryten_llm and library modules imported by ``kryten-llm ARGV`` in a fresh process."""
    code = (
        "import json, sys\n"
        "from kryten_llm.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_version_imports_neither_subcommands_nor_heavy_libraries() -> None:
    modules = _modules_after(["--version"])
    assert "kryten_llm.batch" not in modules
    assert "kryten_llm.explore" not in modules
    assert "kryten_llm.service" not in modules
    assert not {"aiohttp", "nats", "pydantic"} & modules


def test_a_lazy_subcommand_is_imported_when_it_is_the_command() -> None:
    modules = _modules_after(["batch", "--help"])
    assert "kryten_llm.batch.cli" in modules
    assert "kryten_llm.explore.cli" not in modules


def test_a_command_name_later_in_the_line_is_an_argument_not_a_command() -> None:
    """``logs stats explore`` reads a folder called explore: the logs command, nothing lazy."""
    modules = _modules_after(["logs", "stats", "explore"])
    assert "kryten_llm.explore.cli" not in modules
    assert "kryten_llm.ops.logstats" in modules
