"""The folder source's record of acknowledged segments: a SQLite table, one row per segment.

Why SQLite rather than a JSON file: acknowledgements arrive one at a time and out of order, and
each must be durable before `ack` returns. With SQLite that is one small committed transaction per
ack (WAL + synchronous=FULL: atomic, and it survives a crash or power loss mid-write), where a JSON
file would be rewritten whole, with its own temp-file-and-rename dance, on every ack. Caveat: WAL
needs a local filesystem; point `checkpoint` at a local disk when the folder is on NFS or SMB.

A row is (folder, name, mtime_ns). The mtime tells a new file from an old one of the same name
(encoders that reuse segment names): a file whose mtime differs from its row is new.

Methods block (each commit waits for fsync): call them through `asyncio.to_thread`. A lock
serialises them, so they are safe from any thread.
"""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable


class Checkpoint:
    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        with self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS done (folder TEXT NOT NULL, name TEXT NOT NULL, "
                "mtime_ns INTEGER NOT NULL, PRIMARY KEY (folder, name)) WITHOUT ROWID"
            )

    def load(self) -> dict[str, dict[str, int]]:
        """folder -> file name -> mtime_ns of every acknowledged segment."""
        done: dict[str, dict[str, int]] = {}
        with self._lock:
            for folder, name, mtime_ns in self._db.execute("SELECT folder, name, mtime_ns FROM done"):
                done.setdefault(folder, {})[name] = mtime_ns
        return done

    def add(self, folder: str, name: str, mtime_ns: int) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO done VALUES (?, ?, ?)", (folder, name, mtime_ns))

    def remove(self, folder: str, names: Iterable[str]) -> None:
        with self._lock, self._db:
            self._db.executemany("DELETE FROM done WHERE folder = ? AND name = ?", ((folder, n) for n in names))

    def close(self) -> None:
        with self._lock:
            self._db.close()
