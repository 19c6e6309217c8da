"""The memory's one SQLite file: notes about users and channels, and nothing else.

A :class:`MemoryStore` is plain synchronous :mod:`sqlite3`. The live bot calls it only from its
own single worker thread (:class:`kryten_llm.memory.live.Memory`), never from the event loop;
the ``kryten-llm memory`` command calls it directly. Opening checks the file the way the bot
will use it (readable, a database of ours, writable), so a broken store is reported at startup
with its path instead of failing the first time someone says "remember".
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from kryten_llm.errors import MemoryStoreError

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY,
    domain TEXT NOT NULL,
    channel TEXT NOT NULL,
    scope TEXT NOT NULL,
    about TEXT NOT NULL,
    author TEXT NOT NULL,
    text TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS notes_about ON notes (domain, channel, scope, about);
"""
T = TypeVar("T")
_COLUMNS = "domain, channel, scope, about, author, text, source, created_at, id"


class Scope(StrEnum):
    """Whom a note is about."""

    USER = "user"
    CHANNEL = "channel"


class Source(StrEnum):
    """How a note came to be."""

    SAID = "said"  # the user asked the bot to remember it
    EXTRACTED = "extracted"  # the optional extraction step found it
    OPERATOR = "operator"  # added by the operator


@dataclass(frozen=True, slots=True)
class Note:
    """One remembered fact.

    Attributes:
        domain, channel: where it was said (the channel lower-cased).
        scope: about a user or about the channel.
        about: the user's name lower-cased (``""`` for a channel note).
        author: who said it, as spelt in chat.
        text: the fact, as the user wrote it (untrusted).
        source: how it was stored.
        created_at: Unix time it was stored.
        id: its row id (0 before it is stored).
    """

    domain: str
    channel: str
    scope: Scope
    about: str
    author: str
    text: str
    source: Source
    created_at: float
    id: int = 0

    @property
    def key(self) -> tuple[str, str, str]:
        """What notes are grouped and limited by: domain, channel, and the user or ``""``."""
        return (self.domain, self.channel, self.about)

    def as_dict(self) -> dict[str, str | float | int]:
        return {
            "id": self.id,
            "domain": self.domain,
            "channel": self.channel,
            "scope": str(self.scope),
            "about": self.about,
            "author": self.author,
            "text": self.text,
            "source": str(self.source),
            "created_at": self.created_at,
        }


def _note(row: tuple[str, str, str, str, str, str, str, float, int]) -> Note:
    domain, channel, scope, about, author, text, source, created_at, rowid = row
    return Note(
        domain, channel, Scope(scope), about, author, text, Source(source), created_at, rowid
    )


class MemoryStore:
    """Notes in one SQLite file. Open it with :meth:`open`; thread-safe, one call at a time.

    Raises (every method):
        MemoryStoreError: the file cannot be read or written; it names the path.
    """

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path | str) -> MemoryStore:
        """Open (or create) the store at ``path`` and check that the bot can use it.

        Raises:
            MemoryStoreError: the folder is missing, the file is not a database of ours, is
                damaged, or cannot be written.
        """
        file = Path(path)
        if not file.parent.is_dir():
            raise MemoryStoreError(str(file), f"the folder {file.parent} does not exist")
        try:
            db = sqlite3.connect(file, timeout=2.0, check_same_thread=False)
        except sqlite3.Error as exc:
            raise MemoryStoreError(str(file), _explain(exc)) from None
        try:
            (verdict,) = db.execute("PRAGMA quick_check").fetchone()
            if verdict != "ok":
                raise MemoryStoreError(str(file), f"the database is damaged ({verdict})")
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise MemoryStoreError(
                    str(file), f"written by a newer kryten-llm (schema {version})"
                )
            # Taking the write lock proves the file and its folder are writable (the journal).
            db.execute("BEGIN IMMEDIATE")
            if version < SCHEMA_VERSION:
                db.executescript(_SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")
            db.commit()  # nothing changed when the schema was there: other readers see no write
        except sqlite3.Error as exc:
            db.close()
            raise MemoryStoreError(str(file), _explain(exc)) from None
        except MemoryStoreError:
            db.close()
            raise
        return cls(file, db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, note: Note, *, keep: int) -> Note:
        """Store ``note``; only the ``keep`` newest notes of its user (or channel) stay.

        Returns:
            The note with its row id.
        """

        def write(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                f"INSERT INTO notes ({_COLUMNS.removesuffix(', id')}) VALUES (?,?,?,?,?,?,?,?)",
                (
                    note.domain,
                    note.channel,
                    str(note.scope),
                    note.about,
                    note.author,
                    note.text,
                    str(note.source),
                    note.created_at,
                ),
            )
            db.execute(
                "DELETE FROM notes WHERE domain=? AND channel=? AND scope=? AND about=? AND id NOT"
                " IN (SELECT id FROM notes WHERE domain=? AND channel=? AND scope=? AND about=?"
                " ORDER BY created_at DESC, id DESC LIMIT ?)",
                (*_group(note), *_group(note), keep),
            )
            return cursor.lastrowid or 0

        return replace(note, id=self._write(write))

    def notes(self, *, since: float = 0.0) -> list[Note]:
        """Every note stored at or after ``since`` (Unix time), oldest first."""
        return self._read(
            f"SELECT {_COLUMNS} FROM notes WHERE created_at >= ? ORDER BY created_at, id",
            (since,),
        )

    def about(self, user: str, domain: str | None = None) -> list[Note]:
        """Every note about ``user`` or written by them (on ``domain``, or anywhere)."""
        where, params = _user_filter(user, domain)
        return self._read(f"SELECT {_COLUMNS} FROM notes WHERE {where} ORDER BY id", params)

    def forget(self, user: str, domain: str | None = None) -> int:
        """Delete every note about ``user`` or written by them; returns how many went."""
        where, params = _user_filter(user, domain)
        return self._write(
            lambda db: db.execute(f"DELETE FROM notes WHERE {where}", params).rowcount
        )

    def delete(self, ids: Iterable[int]) -> int:
        """Delete notes by row id; returns how many went."""
        wanted = [(i,) for i in ids]
        return self._write(
            lambda db: db.executemany("DELETE FROM notes WHERE id = ?", wanted).rowcount
        )

    def purge(self, before: float) -> int:
        """Delete notes stored before ``before`` (Unix time): the age limit."""
        return self._write(
            lambda db: db.execute("DELETE FROM notes WHERE created_at < ?", (before,)).rowcount
        )

    def version(self) -> int:
        """Changes when another connection (another process) has written to the file."""
        with self._lock:
            try:
                (value,) = self._db.execute("PRAGMA data_version").fetchone()
            except sqlite3.Error as exc:
                raise MemoryStoreError(str(self.path), _explain(exc)) from None
        return int(value)

    def _read(self, sql: str, params: tuple[object, ...]) -> list[Note]:
        with self._lock:
            try:
                return [_note(row) for row in self._db.execute(sql, params)]
            except sqlite3.Error as exc:
                raise MemoryStoreError(str(self.path), _explain(exc)) from None

    def _write(self, change: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                with self._db:  # one transaction: committed, or rolled back on error
                    return change(self._db)
            except sqlite3.Error as exc:
                raise MemoryStoreError(str(self.path), _explain(exc)) from None


def _group(note: Note) -> tuple[str, str, str, str]:
    return (note.domain, note.channel, str(note.scope), note.about)


def _user_filter(user: str, domain: str | None) -> tuple[str, tuple[str, ...]]:
    name = user.lower()
    where = "(about = ? OR lower(author) = ?)"
    if domain is None:
        return where, (name, name)
    return f"domain = ? AND {where}", (domain, name, name)


def _explain(exc: sqlite3.Error) -> str:
    text = str(exc)
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in text:
        return "not an SQLite database (damaged, or another file): move it away or fix memory.path"
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return f"cannot be written ({text}): make the file and its folder writable"
    return text
