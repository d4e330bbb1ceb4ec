"""The local job ledger: every async job this user started, in one SQLite file.

CoCalc keeps async job records only in the project's memory (one hour after the
last read, at most 100, none across a project restart), and a kernel restart
loses every handle. The ledger keeps what is needed to find, re-attach to and
report a job afterwards: site, project, job id, pid, command, start time, status,
the signals sent to it, and its output (partial while it runs, final once known).
It never stores an API key: the site is stored as its URL without user info.

Location: ``$COCALC_MAGICS_DATA_DIR/jobs.sqlite3`` when that variable is set,
else ``platformdirs.user_data_dir("cocalc-magics")/jobs.sqlite3``. The directory
is created owner-only and the file is owner-only, because outputs can be private.

Concurrency: each operation opens its own short SQLite connection in WAL mode with
a busy timeout, so threads of one kernel and several kernels can use the same file
at once. Writes are single statements or short transactions.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import platformdirs

__all__ = [
    "DATA_DIR_VARIABLE",
    "JobLedger",
    "LedgerEntry",
    "default_ledger_path",
    "site_of",
]

logger = logging.getLogger(__name__)

#: Environment variable naming the directory of ``jobs.sqlite3`` (used by tests).
DATA_DIR_VARIABLE = "COCALC_MAGICS_DATA_DIR"
LEDGER_FILE_NAME = "jobs.sqlite3"
# Seconds a writer waits for another kernel's transaction before failing.
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    site TEXT NOT NULL,
    project_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    pid INTEGER,
    command TEXT,
    start_ms INTEGER,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    exit_code INTEGER,
    elapsed_s REAL,
    stdout TEXT NOT NULL DEFAULT '',
    stderr TEXT NOT NULL DEFAULT '',
    message TEXT,
    signals TEXT NOT NULL DEFAULT '',
    final INTEGER NOT NULL DEFAULT 0,
    stats TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (site, project_id, job_id)
);
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created_ms);
"""

_COLUMNS = (
    "site",
    "project_id",
    "job_id",
    "pid",
    "command",
    "start_ms",
    "created_ms",
    "updated_ms",
    "status",
    "exit_code",
    "elapsed_s",
    "stdout",
    "stderr",
    "message",
    "signals",
    "final",
    "stats",
)


def default_ledger_path() -> Path:
    """Return the ledger file: under ``$COCALC_MAGICS_DATA_DIR`` or the user data dir."""
    directory = os.environ.get(DATA_DIR_VARIABLE) or platformdirs.user_data_dir(
        "cocalc-magics"
    )
    return Path(directory) / LEDGER_FILE_NAME


def site_of(host: str) -> str:
    """Return the site URL *host* without user name, password, query or fragment."""
    parts = urlsplit(host)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class LedgerEntry:
    """One job as the ledger stores it.

    ``signals`` lists the signal names sent to the job, in order. ``final`` is
    True once the job's final record (or its loss) has been stored. ``stats`` is
    a list of samples as dicts with CoCalc's keys (``timestamp`` in ms,
    ``mem_rss`` in MiB, ``cpu_pct``, ``cpu_secs``).
    """

    site: str
    project_id: str
    job_id: str
    status: str
    created_ms: int
    updated_ms: int
    pid: int | None = None
    command: str | None = None
    start_ms: int | None = None
    exit_code: int | None = None
    elapsed_s: float | None = None
    stdout: str = ""
    stderr: str = ""
    message: str | None = None
    signals: list[str] = field(default_factory=list)
    final: bool = False
    stats: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> LedgerEntry:
        values = dict(row)
        values["signals"] = [s for s in (values.get("signals") or "").split(",") if s]
        values["final"] = bool(values.get("final"))
        try:
            values["stats"] = json.loads(values.get("stats") or "[]")
        except ValueError:
            values["stats"] = []
        return cls(**values)

    def to_row(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in _COLUMNS}
        values["signals"] = ",".join(self.signals)
        values["final"] = int(self.final)
        values["stats"] = json.dumps(self.stats)
        return values


# Each thread keeps one open connection, to the ledger file it used last. Opening
# a connection costs about a millisecond, and every command writes the ledger
# several times. sqlite3 connections may not cross threads, so they are kept per
# thread. A thread's connection is closed when the thread ends or moves to another
# file, so a process keeps at most one per thread.
_local = threading.local()


def _thread_connection(path: Path) -> sqlite3.Connection:
    cached = getattr(_local, "connection", None)
    # A file deleted since then needs a new connection, or writes would go to the
    # deleted file.
    if cached is not None and _local.path == path and path.exists():
        return cached
    if cached is not None:
        cached.close()

    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
    db.row_factory = sqlite3.Row
    # With WAL, NORMAL syncs at checkpoints only: a crash of the kernel loses
    # nothing, a power cut at most the last writes.
    db.execute("PRAGMA synchronous=NORMAL")
    _local.connection = db
    _local.path = path
    return db


class JobLedger:
    """The SQLite file of known jobs; see the module docstring.

    Parameters
    ----------
    path : str or Path, optional
        The database file; by default :func:`default_ledger_path`.
    """

    # Files this process has already prepared. Preparing costs a few
    # milliseconds (directory, WAL mode, schema), and every command makes a ledger.
    _prepared: ClassVar[set[Path]] = set()

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else default_ledger_path()
        if self.path not in JobLedger._prepared or not self.path.exists():
            self._prepare()
            JobLedger._prepared.add(self.path)

    def __repr__(self) -> str:
        return f"<JobLedger {str(self.path)!r}>"

    def _prepare(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        created = not self.path.exists()
        with self._connect() as db:
            # WAL lets readers in other kernels go on while one kernel writes.
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        if created:
            os.chmod(self.path, 0o600)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """Give one operation a connection; commit on success, roll back on error."""
        db = _thread_connection(self.path)
        with db:
            yield db

    def add(self, entry: LedgerEntry) -> None:
        """Insert *entry*, or replace the stored entry of the same job."""
        row = entry.to_row()
        names = ", ".join(row)
        marks = ", ".join(f":{name}" for name in row)
        with self._connect() as db:
            db.execute(f"INSERT OR REPLACE INTO jobs ({names}) VALUES ({marks})", row)
        logger.debug("ledger: stored job %s (%s)", entry.job_id, entry.status)

    def update(self, site: str, project_id: str, job_id: str, **values: Any) -> bool:
        """Set the given columns of one job; ``updated_ms`` is set to now.

        An entry that is already final is left unchanged, so a late update from
        another thread or kernel (a partial output, a "lost") cannot overwrite a
        harvested final record. Returns whether a row was changed.
        """
        unknown = set(values) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown ledger columns: {sorted(unknown)}")
        if "signals" in values:
            values["signals"] = ",".join(values["signals"])
        if "stats" in values:
            values["stats"] = json.dumps(values["stats"])
        if "final" in values:
            values["final"] = int(values["final"])
        values["updated_ms"] = _now_ms()

        assignments = ", ".join(f"{name} = :{name}" for name in values)
        key = {"key_site": site, "key_project": project_id, "key_job": job_id}
        with self._connect() as db:
            cursor = db.execute(
                f"UPDATE jobs SET {assignments} WHERE site = :key_site AND "
                "project_id = :key_project AND job_id = :key_job AND final = 0",
                {**values, **key},
            )
        return cursor.rowcount > 0

    def get(self, site: str, project_id: str, job_id: str) -> LedgerEntry | None:
        """Return the entry of one job, or None."""
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM jobs WHERE site = ? AND project_id = ? AND job_id = ?",
                (site, project_id, job_id),
            ).fetchone()
        return LedgerEntry.from_row(row) if row else None

    def find(self, job_id_prefix: str, *, site: str | None = None) -> list[LedgerEntry]:
        """Return the entries whose job id starts with *job_id_prefix*, newest first."""
        pattern = _escape_like(job_id_prefix) + "%"
        query = "SELECT * FROM jobs WHERE job_id LIKE ? ESCAPE '\\'"
        parameters: list[Any] = [pattern]
        if site is not None:
            query += " AND site = ?"
            parameters.append(site)
        query += " ORDER BY created_ms DESC"
        with self._connect() as db:
            rows = db.execute(query, parameters).fetchall()
        return [LedgerEntry.from_row(row) for row in rows]

    def entries(
        self,
        *,
        site: str | None = None,
        statuses: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[LedgerEntry]:
        """Return entries newest first, optionally of one site and some statuses."""
        query = "SELECT * FROM jobs"
        clauses: list[str] = []
        parameters: list[Any] = []
        if site is not None:
            clauses.append("site = ?")
            parameters.append(site)
        if statuses:
            clauses.append(f"status IN ({', '.join('?' for _ in statuses)})")
            parameters.extend(statuses)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += " ORDER BY created_ms DESC"
        if limit is not None:
            query += " LIMIT ?"
            parameters.append(int(limit))
        with self._connect() as db:
            rows = db.execute(query, parameters).fetchall()
        return [LedgerEntry.from_row(row) for row in rows]

    def forget(self, site: str, project_id: str, job_id: str) -> bool:
        """Delete one entry; return whether it existed."""
        with self._connect() as db:
            cursor = db.execute(
                "DELETE FROM jobs WHERE site = ? AND project_id = ? AND job_id = ?",
                (site, project_id, job_id),
            )
        return cursor.rowcount > 0


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
