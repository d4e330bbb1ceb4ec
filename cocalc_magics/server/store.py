"""SQLite storage of the local server: accounts, API keys and projects.

Everything that must survive a restart lives in ``<data_dir>/state.sqlite3``. The
store is used from the server's event-loop thread only, so one connection is enough.
Queries are small and indexed, and SQLite answers them in microseconds, so they run
on the loop directly rather than in an executor.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    account_id TEXT PRIMARY KEY,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    admin INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL REFERENCES accounts(account_id),
    project_id TEXT,
    name TEXT NOT NULL DEFAULT '',
    secret_hash TEXT NOT NULL,
    trunc TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expire_ms INTEGER,
    last_active_ms INTEGER
);
CREATE TABLE IF NOT EXISTS projects (
    project_id TEXT PRIMARY KEY,
    title TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL DEFAULT 'opened',
    state_time_ms INTEGER NOT NULL,
    settings TEXT NOT NULL DEFAULT '{}',
    created_ms INTEGER NOT NULL,
    last_edited_ms INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS collaborators (
    project_id TEXT NOT NULL REFERENCES projects(project_id),
    account_id TEXT NOT NULL REFERENCES accounts(account_id),
    grp TEXT NOT NULL,
    PRIMARY KEY (project_id, account_id)
);
"""


def now_ms() -> int:
    """Return the current time in milliseconds since the Unix epoch."""
    return int(time.time() * 1000)


@dataclass
class ApiKeyRow:
    """One stored API key; the secret itself is never stored, only its hash."""

    id: int
    account_id: str
    project_id: str | None
    name: str
    secret_hash: str
    trunc: str
    created_ms: int
    expire_ms: int | None
    last_active_ms: int | None


@dataclass
class ProjectRow:
    """One stored project with its collaborators (account id to group)."""

    project_id: str
    title: str
    description: str
    state: str
    state_time_ms: int
    settings: dict[str, Any]
    created_ms: int
    last_edited_ms: int
    deleted: bool
    users: dict[str, str] = field(default_factory=dict)


class Store:
    """Accounts, API keys and projects in one SQLite file.

    Parameters
    ----------
    path
        The database file; created with its tables when missing.
    """

    def __init__(self, path: Path):
        self.path = path
        # Create the file owner-only first: it contains key hashes and account data,
        # and SQLite gives its -wal and -shm files the same mode.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- meta ---------------------------------------------------------------------

    def get_meta(self, name: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return None if row is None else row["value"]

    def set_meta(self, name: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO meta(name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value=excluded.value",
            (name, value),
        )

    # -- accounts -----------------------------------------------------------------

    def create_account(self, first_name: str, last_name: str, admin: bool) -> str:
        account_id = str(uuid.uuid4())
        self.db.execute(
            "INSERT INTO accounts VALUES (?, ?, ?, ?, ?)",
            (account_id, first_name, last_name, int(admin), now_ms()),
        )
        return account_id

    def get_account(self, account_id: str) -> sqlite3.Row | None:
        return self.db.execute(
            "SELECT * FROM accounts WHERE account_id=?", (account_id,)
        ).fetchone()

    def is_admin(self, account_id: str) -> bool:
        row = self.get_account(account_id)
        return bool(row and row["admin"])

    # -- API keys -----------------------------------------------------------------

    def insert_api_key(
        self,
        account_id: str,
        project_id: str | None,
        name: str,
        expire_ms: int | None,
    ) -> int:
        """Insert a key row without its hash yet and return its database id.

        The id is part of the key text, so the caller builds the key from the id and
        then stores the hash with :meth:`set_api_key_secret`.
        """
        cursor = self.db.execute(
            "INSERT INTO api_keys(account_id, project_id, name, secret_hash, trunc, "
            "created_ms, expire_ms) VALUES (?, ?, ?, '', '', ?, ?)",
            (account_id, project_id, name, now_ms(), expire_ms),
        )
        return int(cursor.lastrowid)

    def set_api_key_secret(self, key_id: int, secret_hash: str, trunc: str) -> None:
        self.db.execute(
            "UPDATE api_keys SET secret_hash=?, trunc=? WHERE id=?",
            (secret_hash, trunc, key_id),
        )

    def get_api_key(self, key_id: int) -> ApiKeyRow | None:
        row = self.db.execute("SELECT * FROM api_keys WHERE id=?", (key_id,)).fetchone()
        return None if row is None else ApiKeyRow(**dict(row))

    def list_api_keys(self, account_id: str, project_id: str | None) -> list[ApiKeyRow]:
        if project_id is None:
            rows = self.db.execute(
                "SELECT * FROM api_keys WHERE account_id=? AND project_id IS NULL "
                "ORDER BY id",
                (account_id,),
            )
        else:
            rows = self.db.execute(
                "SELECT * FROM api_keys WHERE account_id=? AND project_id=? ORDER BY id",
                (account_id, project_id),
            )
        return [ApiKeyRow(**dict(row)) for row in rows]

    def update_api_key(
        self, key_id: int, *, name: str | None, expire_ms: int | None | bool
    ) -> None:
        if name is not None:
            self.db.execute("UPDATE api_keys SET name=? WHERE id=?", (name, key_id))
        if expire_ms is not False:
            self.db.execute(
                "UPDATE api_keys SET expire_ms=? WHERE id=?", (expire_ms, key_id)
            )

    def touch_api_key(self, key_id: int) -> None:
        self.db.execute(
            "UPDATE api_keys SET last_active_ms=? WHERE id=?", (now_ms(), key_id)
        )

    def delete_api_key(self, key_id: int) -> None:
        self.db.execute("DELETE FROM api_keys WHERE id=?", (key_id,))

    # -- projects -----------------------------------------------------------------

    def create_project(self, owner_id: str, title: str, description: str) -> str:
        project_id = str(uuid.uuid4())
        stamp = now_ms()
        self.db.execute(
            "INSERT INTO projects(project_id, title, description, state, state_time_ms,"
            " settings, created_ms, last_edited_ms) VALUES (?, ?, ?, 'opened', ?, '{}',"
            " ?, ?)",
            (project_id, title, description, stamp, stamp, stamp),
        )
        self.add_collaborator(project_id, owner_id, "owner")
        return project_id

    def get_project(self, project_id: str) -> ProjectRow | None:
        row = self.db.execute(
            "SELECT * FROM projects WHERE project_id=?", (project_id,)
        ).fetchone()
        if row is None:
            return None
        values = dict(row)
        values["settings"] = json.loads(values["settings"])
        values["deleted"] = bool(values["deleted"])
        project = ProjectRow(**values)
        project.users = self.collaborators(project_id)
        return project

    def project_ids_of(self, account_id: str) -> list[str]:
        rows = self.db.execute(
            "SELECT project_id FROM collaborators WHERE account_id=? ORDER BY project_id",
            (account_id,),
        )
        return [row["project_id"] for row in rows]

    def all_project_ids(self) -> list[str]:
        rows = self.db.execute("SELECT project_id FROM projects")
        return [row["project_id"] for row in rows]

    def update_project(self, project_id: str, **values: Any) -> None:
        """Set columns of one project; ``settings`` is given as a dict."""
        if "settings" in values:
            values["settings"] = json.dumps(values["settings"])
        for column, value in values.items():
            if column not in {
                "title",
                "description",
                "state",
                "state_time_ms",
                "settings",
                "last_edited_ms",
                "deleted",
            }:
                raise ValueError(f"unknown project column {column!r}")
            self.db.execute(
                f"UPDATE projects SET {column}=? WHERE project_id=?",
                (value, project_id),
            )

    # -- collaborators ------------------------------------------------------------

    def collaborators(self, project_id: str) -> dict[str, str]:
        rows = self.db.execute(
            "SELECT account_id, grp FROM collaborators WHERE project_id=?",
            (project_id,),
        )
        return {row["account_id"]: row["grp"] for row in rows}

    def is_collaborator(self, project_id: str, account_id: str) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM collaborators WHERE project_id=? AND account_id=?",
            (project_id, account_id),
        ).fetchone()
        return row is not None

    def add_collaborator(self, project_id: str, account_id: str, group: str) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO collaborators VALUES (?, ?, ?)",
            (project_id, account_id, group),
        )

    def remove_collaborator(self, project_id: str, account_id: str) -> None:
        self.db.execute(
            "DELETE FROM collaborators WHERE project_id=? AND account_id=?",
            (project_id, account_id),
        )
