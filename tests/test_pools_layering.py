"""The fallback pools sit below both of their users: the live bot reads them without importing
the explorer, and :mod:`kryten_llm.pools` itself depends only on the error tree and the
crash-safe file helpers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import kryten_llm.pools

PACKAGE = Path(kryten_llm.pools.__file__).parent
ALLOWED = {"kryten_llm.errors", "kryten_llm.files"}


def _kryten_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.split(".")[0] == "kryten_llm"}


def test_pools_import_only_errors_files_and_themselves() -> None:
    """Nothing in ``kryten_llm.pools`` reaches up into explore, the pipeline or the service."""
    for path in sorted(PACKAGE.glob("*.py")):
        outside = {
            name
            for name in _kryten_imports(path)
            if name not in ALLOWED and not name.startswith("kryten_llm.pools")
        }
        assert not outside, f"{path.name} imports {sorted(outside)}"


def test_the_bots_fallback_replies_load_without_the_explorer() -> None:
    """Importing the bot's fallback stage does not import :mod:`kryten_llm.explore`."""
    code = (
        "import sys, kryten_llm.pipeline.fallback\n"
        "print(sorted(m for m in sys.modules if m.startswith('kryten_llm.explore')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_the_public_names_are_sorted_and_exported() -> None:
    """``__all__`` is sorted and every name in it exists."""
    names = kryten_llm.pools.__all__
    assert names == sorted(names)
    assert all(hasattr(kryten_llm.pools, name) for name in names)
