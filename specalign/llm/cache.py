"""The request cache: SQLite under paths.cache, shared safely by processes.

The journal is WAL by default (readers never wait for the writer). WAL relies on shared
memory that network filesystems (NFS, Lustre, GPFS) do not offer: there,
`paths.cache_journal=delete` uses SQLite's rollback journal, which only needs file locks.

A request's key is the sha256 of (backend identity, operation, messages, sampling incl.
seed). Answers are written as soon as each batch returns, so a killed synthesis resumes
from where it stopped, and concurrent sweep members reuse each other's answers.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from specalign.errors import ConfigError
from specalign.pipeline.keys import content_key


def request_key(identity: dict[str, Any], operation: str, chat: Any, params: dict[str, Any]) -> str:
    return content_key(
        {"identity": identity, "op": operation, "chat": chat, "params": params}, length=64
    )


JOURNALS = ("wal", "delete", "truncate", "persist")


class RequestCache:
    def __init__(self, path: str | Path, journal_mode: str = "wal") -> None:
        if journal_mode.lower() not in JOURNALS:
            raise ConfigError(
                f"paths.cache_journal={journal_mode}: choose one of {', '.join(JOURNALS)} "
                "(delete on network filesystems)."
            )
        self.journal_mode = journal_mode.upper()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.local = threading.local()
        # Switching to WAL takes an exclusive lock and SQLite does not wait for it (no busy
        # handler), so processes opening a new cache at the same moment retry briefly.
        for attempt in range(100):
            try:
                with self.connect() as db:
                    db.execute(f"PRAGMA journal_mode={self.journal_mode}")
                    db.execute(
                        "CREATE TABLE IF NOT EXISTS requests (key TEXT PRIMARY KEY, value TEXT)"
                    )
                break
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or attempt == 99:
                    raise
                time.sleep(0.05 * (1 + attempt % 10))

    def connect(self) -> sqlite3.Connection:
        """One connection per thread (sqlite3 connections are not shareable across threads)."""
        db = getattr(self.local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            db.execute("PRAGMA busy_timeout=60000")
            self.local.db = db
        return db

    def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        db = self.connect()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows = db.execute(
                f"SELECT key, value FROM requests WHERE key IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            found.update({key: json.loads(value) for key, value in rows})
        return found

    def put_many(self, items: dict[str, dict[str, Any]]) -> None:
        if items:
            db = self.connect()
            with db:  # one transaction: a batch is stored whole or not at all
                db.execute("BEGIN IMMEDIATE")
                db.executemany(
                    "INSERT OR REPLACE INTO requests VALUES (?, ?)",
                    [(k, json.dumps(v)) for k, v in items.items()],
                )

    def __len__(self) -> int:
        return self.connect().execute("SELECT COUNT(*) FROM requests").fetchone()[0]
