"""``--prompt-file``: a template kept in a file the user edits between runs, and its archive.

Headline-batch users iterate on one prompt file. So that every answer can be traced to the
exact prompt that produced it, each distinct prompt text is archived once, at the start of the
run that first uses it, as ``prompts/<hash>.txt`` in the run store's folder, where ``<hash>``
is the first 12 hex characters of the SHA-256 of the text (:func:`prompt_hash`). The run
records the hash (``prompt_sha`` in its options) and keeps the text itself as its template, so
``--resume`` asks with the prompt the run started with even if the file was edited since.
The same hash keys the answers in per-item files (:mod:`kryten_llm.batch.itemfiles`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from kryten_llm.errors import ConfigError
from kryten_llm.files import atomic_write

ARCHIVE_DIR = "prompts"
HASH_CHARS = 12


def prompt_hash(text: str) -> str:
    """The first 12 lowercase hex characters of the SHA-256 of ``text`` (UTF-8)."""
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def read_prompt(path: Path) -> str:
    """The prompt file's text.

    Raises:
        ConfigError: it cannot be read or is empty.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            [("prompt_file", f"cannot read {path}: {exc}", "give a readable UTF-8 text file")]
        ) from None
    if not text.strip():
        raise ConfigError([("prompt_file", f"{path} is empty", "write the prompt in it")])
    return text


def archive(text: str, store_folder: Path) -> Path:
    """Keep ``text`` as ``prompts/<hash>.txt`` under ``store_folder`` (once; returns its path).

    Raises:
        ConfigError: the archive cannot be written.
    """
    folder = store_folder / ARCHIVE_DIR
    path = folder / f"{prompt_hash(text)}.txt"
    if path.is_file():
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text.encode())
    except OSError as exc:
        raise ConfigError(
            [("prompt_file", f"cannot archive the prompt in {folder}: {exc}", "check the --db")]
        ) from None
    return path
