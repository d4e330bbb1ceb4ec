"""SQLite connections of the job ledger, and the thread that writes it in the background.

Each thread keeps one open connection to the ledger file it used last, because
opening one costs about a millisecond and every command writes the ledger.

Writes that a running command makes go to :data:`writer`, one daemon thread per
process. It waits :data:`BATCH_DELAY_S` after the first queued write and then
commits everything queued by then in one transaction per file, in the order
queued. A command that ends within that delay (most do) so costs one commit
instead of two, made while the kernel is otherwise idle. Every read and direct
write of the ledger waits for the queue first, and the queue is flushed when the
interpreter exits.

NOTE: a kernel killed by SIGKILL (or the OOM killer) loses the writes queued in
its last :data:`BATCH_DELAY_S`, so a job started just before is not recorded.
"""

from __future__ import annotations

import atexit
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["BUSY_TIMEOUT_S", "Statement", "thread_connection", "writer"]

logger = logging.getLogger(__name__)

# Seconds a writer waits for another kernel's transaction before failing.
BUSY_TIMEOUT_S = 30.0
# Seconds the writer collects writes before committing them together.
BATCH_DELAY_S = 0.05
# Seconds without writes after which the writer thread ends.
IDLE_EXIT_S = 5.0
# Seconds the interpreter waits at exit for queued writes to land.
EXIT_FLUSH_TIMEOUT_S = 10.0

_local = threading.local()


def thread_connection(path: Path) -> sqlite3.Connection:
    """Return this thread's connection to *path*, opening it when needed.

    A thread's connection is closed when the thread ends or moves to another
    file, so a process keeps at most one per thread.
    """
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
    # nothing it committed, a power cut at most the last commits.
    db.execute("PRAGMA synchronous=NORMAL")
    _local.connection = db
    _local.path = path
    return db


class Statement(NamedTuple):
    """One queued write: SQL with named parameters, for one ledger file."""

    path: Path
    sql: str
    parameters: dict[str, Any]
    description: str


class BackgroundWriter:
    """One daemon thread that commits queued statements in batches, in order.

    The thread starts with the first statement and ends after :data:`IDLE_EXIT_S`
    seconds without any, so an idle kernel keeps no extra thread. A failed batch
    is retried one statement at a time, and each failure is logged.
    """

    def __init__(self, batch_delay_s: float = BATCH_DELAY_S) -> None:
        self.batch_delay_s = batch_delay_s
        self._condition = threading.Condition()
        self._queue: list[Statement] = []
        # Statements queued or being written; flush() waits for zero.
        self._unfinished = 0
        self._flush_requests = 0
        self._thread: threading.Thread | None = None
        self._stopping = False

    def submit(self, statement: Statement) -> None:
        """Queue *statement* and return at once."""
        with self._condition:
            self._queue.append(statement)
            self._unfinished += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="cocalc-ledger-writer", daemon=True
                )
                self._thread.start()
            elif len(self._queue) == 1:
                # Wake the idle thread. Later statements join its batch without
                # waking it, because each wake-up takes the GIL from the caller.
                self._condition.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Write the queued statements now and wait for them.

        Returns False if some were still being written after *timeout* seconds.
        """
        with self._condition:
            if self._unfinished == 0:
                return True
            if threading.current_thread() is self._thread:
                # A write that waits for its own batch would never return.
                return False
            self._flush_requests += 1
            self._condition.notify_all()
            try:
                return self._condition.wait_for(lambda: self._unfinished == 0, timeout)
            finally:
                self._flush_requests -= 1

    def stop(self) -> None:
        """Write the queued statements, then end the thread.

        A later :meth:`submit` starts a new thread.
        """
        with self._condition:
            thread = self._thread
            self._stopping = True
            self._condition.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._condition:
            self._stopping = False

    def reset_after_fork(self) -> None:
        # A forked child has no writer thread, and the parent writes its own queue.
        self._condition = threading.Condition()
        self._queue = []
        self._unfinished = 0
        self._flush_requests = 0
        self._thread = None
        self._stopping = False

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                _write(batch)
            except Exception:
                # The thread must go on, or flush() would wait forever.
                logger.exception(
                    "writing the job ledger failed; %d writes were lost", len(batch)
                )
            finally:
                with self._condition:
                    self._unfinished -= len(batch)
                    self._condition.notify_all()

    def _next_batch(self) -> list[Statement] | None:
        """Wait for statements and return them, or None when the thread should end."""
        with self._condition:
            self._condition.wait_for(lambda: self._queue or self._stopping, IDLE_EXIT_S)
            if not self._queue:
                # Deciding under the lock means that submit() sees None and
                # starts a new thread for any statement queued after this.
                self._thread = None
                return None
            # Collect what else arrives within the delay, unless someone waits.
            self._condition.wait_for(
                lambda: self._flush_requests or self._stopping, self.batch_delay_s
            )
            batch, self._queue = self._queue, []
            return batch


def _write(batch: list[Statement]) -> None:
    """Commit *batch*, one transaction per run of statements for the same file."""
    start = 0
    while start < len(batch):
        end = start
        while end < len(batch) and batch[end].path == batch[start].path:
            end += 1
        group = batch[start:end]
        try:
            _commit(group)
        except (OSError, sqlite3.Error) as error:
            if len(group) == 1:
                _log_failure(group[0], error)
            else:
                # Find the statement that fails, and keep the others.
                for statement in group:
                    try:
                        _commit([statement])
                    except (OSError, sqlite3.Error) as single_error:
                        _log_failure(statement, single_error)
        start = end


def _commit(statements: list[Statement]) -> None:
    db = thread_connection(statements[0].path)
    with db:
        for statement in statements:
            db.execute(statement.sql, statement.parameters)


def _log_failure(statement: Statement, error: Exception) -> None:
    logger.warning(
        "writing the job ledger %s failed (%s): %s",
        statement.path,
        statement.description,
        error,
    )


writer = BackgroundWriter()
os.register_at_fork(after_in_child=writer.reset_after_fork)
atexit.register(writer.flush, EXIT_FLUSH_TIMEOUT_S)
