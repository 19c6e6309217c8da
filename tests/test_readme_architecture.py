"""The README's Architecture section names real code: every ``file.py:Name`` hop exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOP = re.compile(r"`([\w/]+)\.py:([\w.]+)`")


def test_every_hop_in_the_architecture_section_exists() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Architecture") : text.index("## Status")]
    hops = HOP.findall(section)
    assert len(hops) >= 20
    for path, dotted in hops:
        module = importlib.import_module("kryten_llm." + path.replace("/", "."))
        target: object = module
        for name in dotted.split("."):
            assert hasattr(target, name), f"{path}.py has no {dotted}"
            target = getattr(target, name)
