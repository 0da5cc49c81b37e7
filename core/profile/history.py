"""Conversation history and the app's session state, in one SQLite file of the profile.

Pure Python (no Qt) so it is usable and tested on its own. Messages are kept per
conversation ("topic:<name>" or "peer:<id>") and bounded: each conversation keeps its newest
``keep`` messages, older ones are deleted as new ones arrive. Search is a case-insensitive
substring match over the rendered text, newest first.

Writes are not committed one by one: a burst of a thousand messages would otherwise be a
thousand transactions on the GUI thread. The caller commits on a short timer and on exit;
WAL mode keeps that cheap and a crash loses at most the last uncommitted second.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

KEEP_PER_CONVERSATION = 5000
PRUNE_EVERY = 200
"""Inserts into one conversation between two prunes of it."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    conv TEXT NOT NULL,
    sender TEXT NOT NULL,
    value TEXT NOT NULL,
    body TEXT NOT NULL,
    at REAL NOT NULL,
    mine INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT '',
    msg_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS messages_conv ON messages (conv, id);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class StoredMessage:
    id: int
    conv: str
    sender: str
    value: Any
    at: float
    mine: bool
    status: str
    msg_id: str


def _text(value: Any) -> str:
    """What search looks in: a string as it is, anything else as its JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class History:
    def __init__(self, path: Path, *, keep: int = KEEP_PER_CONVERSATION) -> None:
        self.path = path
        self.keep = keep
        self._since_prune: dict[str, int] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = self._open(path)

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(path, isolation_level="DEFERRED")
            db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            # A broken file must not keep the app from starting: set it aside, start anew.
            log.error("history %s is unreadable (%s); starting a new one", path, exc)
            path.replace(path.with_name(path.name + ".broken"))
            db = sqlite3.connect(path, isolation_level="DEFERRED")
            db.executescript(SCHEMA)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    # -- messages -----------------------------------------------------------------------------

    def add(
        self,
        conv: str,
        sender: str,
        value: Any,
        at: float,
        *,
        mine: bool = False,
        status: str = "",
        msg_id: str = "",
    ) -> int:
        """Store one message (uncommitted until ``commit``); returns its id."""
        cur = self.db.execute(
            "INSERT INTO messages (conv, sender, value, body, at, mine, status, msg_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (conv, sender, json.dumps(value), _text(value), at, int(mine), status, msg_id),
        )
        count = self._since_prune.get(conv, 0) + 1
        if count >= PRUNE_EVERY:
            self._prune(conv)
            count = 0
        self._since_prune[conv] = count
        return int(cur.lastrowid or 0)

    def set_status(self, message_id: int, status: str, msg_id: str = "") -> None:
        if msg_id:
            self.db.execute(
                "UPDATE messages SET status = ?, msg_id = ? WHERE id = ?",
                (status, msg_id, message_id),
            )
        else:
            self.db.execute("UPDATE messages SET status = ? WHERE id = ?", (status, message_id))

    def _prune(self, conv: str) -> None:
        self.db.execute(
            "DELETE FROM messages WHERE conv = ? AND id <= (SELECT id FROM messages"
            " WHERE conv = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (conv, conv, self.keep),
        )

    def recent(self, conv: str, limit: int = 500) -> list[StoredMessage]:
        """The newest ``limit`` messages of a conversation, oldest first."""
        rows = self.db.execute(
            "SELECT id, conv, sender, value, at, mine, status, msg_id FROM messages"
            " WHERE conv = ? ORDER BY id DESC LIMIT ?",
            (conv, limit),
        ).fetchall()
        return [_row(r) for r in reversed(rows)]

    def search(self, text: str, conv: str | None = None, limit: int = 200) -> list[StoredMessage]:
        """Messages whose text contains ``text`` (any case), newest first."""
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        sql = (
            "SELECT id, conv, sender, value, at, mine, status, msg_id FROM messages"
            " WHERE body LIKE ? ESCAPE '\\'"
        )
        args: list[Any] = [pattern]
        if conv is not None:
            sql += " AND conv = ?"
            args.append(conv)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return [_row(r) for r in self.db.execute(sql, args).fetchall()]

    def count(self, conv: str) -> int:
        row = self.db.execute("SELECT COUNT(*) FROM messages WHERE conv = ?", (conv,)).fetchone()
        return int(row[0])

    # -- session state ------------------------------------------------------------------------

    def get_state(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        if row is None:
            return default
        try:
            return json.loads(row[0])
        except ValueError:
            return default

    def set_state(self, key: str, value: Any) -> None:
        self.db.execute(
            "INSERT INTO state (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    def commit(self) -> None:
        try:
            self.db.commit()
        except sqlite3.Error as exc:
            log.error("could not save the history: %s", exc)

    def close(self) -> None:
        self.commit()
        self.db.close()


def _row(r: tuple[Any, ...]) -> StoredMessage:
    try:
        value = json.loads(r[3])
    except ValueError:
        value = r[3]
    return StoredMessage(r[0], r[1], r[2], value, r[4], bool(r[5]), r[6], r[7])
