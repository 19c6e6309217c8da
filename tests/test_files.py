"""The one crash-safe writer: new content replaces old only when it is complete."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kryten_llm.files import atomic_open, atomic_write


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    path.write_text("old\n")
    os.chmod(path, 0o640)

    def write_half() -> None:
        with atomic_open(path) as file:
            file.write("half of the new")
            raise RuntimeError("the records ran out of disk")

    with pytest.raises(RuntimeError):
        write_half()
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["out.csv"]
    atomic_write(path, b"new\n")
    assert path.read_bytes() == b"new\n"
    assert path.stat().st_mode & 0o777 == 0o640  # the old file's mode is kept
    assert os.listdir(tmp_path) == ["out.csv"]
