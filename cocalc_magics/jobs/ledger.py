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

Concurrency: each thread keeps one SQLite connection in WAL mode with a busy
timeout, so threads of one kernel and several kernels can use the same file at
once. Writes are single statements or short transactions. The writes that a
running command makes (:meth:`JobLedger.add_later`, :meth:`JobLedger.update_later`)
are queued for a writer thread that commits them in batches; every read and
direct write of this process waits for that queue first. See
:mod:`cocalc_magics.jobs.storage` for both, and for what a killed kernel can lose.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import platformdirs

from cocalc_magics.jobs.storage import Statement, thread_connection, writer

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
#: Finished jobs older than this many seconds are deleted when a process first
#: opens the ledger; running jobs are always kept.
FINISHED_MAX_AGE_S = 30 * 24 * 3600
#: At most this many finished jobs are kept, the newest ones.
FINISHED_MAX_COUNT = 5000
# Seconds a read waits for this process's queued writes.
READ_FLUSH_TIMEOUT_S = 5.0

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
_COLUMN_SET = frozenset(_COLUMNS)


def default_ledger_path() -> Path:
    """Return the ledger file: under ``$COCALC_MAGICS_DATA_DIR`` or the user data dir."""
    directory = os.environ.get(DATA_DIR_VARIABLE) or _user_data_dir()
    return Path(directory) / LEDGER_FILE_NAME


@functools.cache
def _user_data_dir() -> str:
    # Computed once per process: a later change of HOME or XDG_DATA_HOME is not seen.
    return platformdirs.user_data_dir("cocalc-magics")


@functools.lru_cache(maxsize=64)
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


def flush_pending_writes(timeout: float | None = None) -> bool:
    """Write the queued ledger writes of this process now, and wait for them.

    Returns False if some were still being written after *timeout* seconds.
    """
    return writer.flush(timeout)


def _flush_queue() -> None:
    # The wait is bounded, so another process that holds the file's lock cannot
    # block a read for the whole busy timeout. The read then goes on without the queue.
    if not writer.flush(READ_FLUSH_TIMEOUT_S):
        logger.info("ledger writes still queued after %s s", READ_FLUSH_TIMEOUT_S)


def stop_writer() -> None:
    """Write the queued ledger writes and end the writer thread."""
    writer.stop()


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
    # The default ledger of each directory, which every command uses.
    _defaults: ClassVar[dict[str, JobLedger]] = {}

    @classmethod
    def default(cls) -> JobLedger:
        """Return the ledger at :func:`default_ledger_path`, one object per file."""
        directory = os.environ.get(DATA_DIR_VARIABLE) or _user_data_dir()
        ledger = cls._defaults.get(directory)
        # A file deleted since then is prepared again by its next write or read.
        if ledger is None:
            ledger = cls(Path(directory) / LEDGER_FILE_NAME)
            cls._defaults[directory] = ledger
        return ledger

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else default_ledger_path()
        if self.path not in JobLedger._prepared or not self.path.exists():
            self._prepare()
            JobLedger._prepared.add(self.path)

    def __repr__(self) -> str:
        return f"<JobLedger {str(self.path)!r}>"

    def _prepare(self) -> None:
        """Create the file (owner-only from the start) and its schema if missing."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        with self._connect() as db:
            # WAL lets readers in other kernels go on while one kernel writes.
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        self.prune()

    def prune(
        self,
        *,
        max_age_s: float = FINISHED_MAX_AGE_S,
        max_count: int = FINISHED_MAX_COUNT,
    ) -> int:
        """Delete finished jobs older than *max_age_s* or beyond the newest *max_count*.

        Running jobs are kept whatever their age, because they may still be
        re-attached. Returns the number of entries deleted.
        """
        cutoff_ms = _now_ms() - int(max_age_s * 1000)
        _flush_queue()
        with self._connect() as db:
            deleted = db.execute(
                "DELETE FROM jobs WHERE final = 1 AND updated_ms < ?", (cutoff_ms,)
            ).rowcount
            deleted += db.execute(
                "DELETE FROM jobs WHERE final = 1 AND rowid NOT IN (SELECT rowid "
                "FROM jobs WHERE final = 1 ORDER BY created_ms DESC LIMIT ?)",
                (max_count,),
            ).rowcount
        if deleted:
            logger.info("ledger %s: deleted %d old finished jobs", self.path, deleted)
        return deleted

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """Give one operation a connection; commit on success, roll back on error."""
        try:
            db = thread_connection(self.path)
        except FileNotFoundError:
            # Deleted since this process prepared it.
            self._prepare()
            db = thread_connection(self.path)
        with db:
            yield db

    def add(self, entry: LedgerEntry) -> None:
        """Insert *entry*, or replace the stored entry of the same job."""
        sql, parameters = _insert_statement(entry.to_row())
        _flush_queue()
        with self._connect() as db:
            db.execute(sql, parameters)

    def add_later(self, entry: LedgerEntry) -> None:
        """Queue :meth:`add` of *entry* for the writer thread and return at once."""
        sql, parameters = _insert_statement(entry.to_row())
        # Urgent: the id of a job that was just started must not wait for a batch.
        writer.submit(
            Statement(
                self.path,
                sql,
                parameters,
                f"add job {entry.job_id}",
                prepare=self._prepare,
                urgent=True,
            )
        )

    def update(self, site: str, project_id: str, job_id: str, **values: Any) -> bool:
        """Set the given columns of one job; ``updated_ms`` is set to now.

        An entry that is already final is left unchanged, so a late update from
        another thread or kernel (a partial output, a "lost") cannot overwrite a
        harvested final record. Returns whether a row was changed.
        """
        sql, parameters = _update_statement(site, project_id, job_id, values)
        _flush_queue()
        with self._connect() as db:
            cursor = db.execute(sql, parameters)
        return cursor.rowcount > 0

    def update_later(
        self, site: str, project_id: str, job_id: str, **values: Any
    ) -> None:
        """Queue :meth:`update` for the writer thread and return at once.

        Unknown columns raise ``ValueError`` here, before anything is queued.
        """
        sql, parameters = _update_statement(site, project_id, job_id, values)
        writer.submit(
            Statement(
                self.path,
                sql,
                parameters,
                f"update job {job_id}",
                prepare=self._prepare,
            )
        )

    def get(self, site: str, project_id: str, job_id: str) -> LedgerEntry | None:
        """Return the entry of one job, or None."""
        _flush_queue()
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
        _flush_queue()
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
        _flush_queue()
        with self._connect() as db:
            rows = db.execute(query, parameters).fetchall()
        return [LedgerEntry.from_row(row) for row in rows]

    def forget(self, site: str, project_id: str, job_id: str) -> bool:
        """Delete one entry; return whether it existed."""
        _flush_queue()
        with self._connect() as db:
            cursor = db.execute(
                "DELETE FROM jobs WHERE site = ? AND project_id = ? AND job_id = ?",
                (site, project_id, job_id),
            )
        return cursor.rowcount > 0


def _insert_statement(row: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return _insert_sql(tuple(row)), row


@functools.lru_cache(maxsize=8)
def _insert_sql(names: tuple[str, ...]) -> str:
    columns = ", ".join(names)
    marks = ", ".join(f":{name}" for name in names)
    return f"INSERT OR REPLACE INTO jobs ({columns}) VALUES ({marks})"


@functools.lru_cache(maxsize=32)
def _update_sql(names: tuple[str, ...]) -> str:
    assignments = ", ".join(f"{name} = :{name}" for name in names)
    return (
        f"UPDATE jobs SET {assignments} WHERE site = :key_site AND "
        "project_id = :key_project AND job_id = :key_job AND final = 0"
    )


def _update_statement(
    site: str, project_id: str, job_id: str, values: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Build the UPDATE of one non-final entry; ``updated_ms`` is set to now."""
    unknown = values.keys() - _COLUMN_SET
    if unknown:
        raise ValueError(f"unknown ledger columns: {sorted(unknown)}")
    row = dict(values)
    if "signals" in row:
        row["signals"] = ",".join(row["signals"])
    if "stats" in row:
        row["stats"] = json.dumps(row["stats"])
    if "final" in row:
        row["final"] = int(row["final"])
    row["updated_ms"] = _now_ms()

    key = {"key_site": site, "key_project": project_id, "key_job": job_id}
    return _update_sql(tuple(row)), {**row, **key}


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
