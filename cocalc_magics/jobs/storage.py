"""SQLite connections of the job ledger, and its background writer thread.

Each thread keeps one open connection to the ledger file it used last, because
opening one costs about a millisecond and every command writes the ledger.

Writes that a running command makes go to :data:`writer`, one daemon thread per
process. The entry of a job that was just started is urgent and committed within
:data:`URGENT_DELAY_S`, together with the final state of a command that ended by
then. Other writes, such as the final state of a longer job, wait
:data:`BATCH_DELAY_S`, so that what arrives by then is committed in one
transaction per file. Every read and
direct write of the ledger waits for the queue first (at most a few seconds), and
the queue is flushed when the interpreter exits, also in children that
``multiprocessing`` forks.

NOTE: a process that ends without running ``atexit`` (SIGKILL, SIGTERM, the OOM
killer, ``os._exit``) loses what is still queued: a job started in its last
:data:`URGENT_DELAY_S`, and final states of its last :data:`BATCH_DELAY_S`. A job
whose final state was lost stays "running" in the ledger, and ``%cocalc jobs``
fetches its end from the project while the project keeps it.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["BUSY_TIMEOUT_S", "Statement", "thread_connection", "writer"]

logger = logging.getLogger(__name__)

# Seconds a writer waits for another kernel's transaction before failing.
BUSY_TIMEOUT_S = 30.0
# Seconds the writer collects writes before committing them together.
BATCH_DELAY_S = 0.05
# The same for a batch with an urgent statement, such as the start of a job.
URGENT_DELAY_S = 0.01
# Seconds without writes after which the writer thread ends.
IDLE_EXIT_S = 5.0
# Seconds the interpreter waits at exit for queued writes to land.
EXIT_FLUSH_TIMEOUT_S = 10.0

_local = threading.local()


def thread_connection(path: Path) -> sqlite3.Connection:
    """Return this thread's connection to the existing file *path*.

    Raises ``FileNotFoundError`` when the file is missing: the ledger prepares a
    new one (schema, owner-only mode) rather than let SQLite create a bare file.
    A thread's connection is closed when the thread moves to another file or the
    file was replaced, so a process keeps at most one per thread.
    """
    identity = _file_identity(path)
    cached = getattr(_local, "connection", None)
    if cached is not None and _local.path == path and _local.identity == identity:
        return cached
    if cached is not None:
        cached.close()

    # mode=rw: SQLite must not create a file of its own, which would lack the
    # schema and the owner-only mode.
    uri = f"{path.absolute().as_uri()}?mode=rw"
    db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
    db.row_factory = sqlite3.Row
    # With WAL, NORMAL syncs at checkpoints only: a crash of the kernel loses
    # nothing it committed, a power cut at most the last commits.
    db.execute("PRAGMA synchronous=NORMAL")
    _local.connection = db
    _local.path = path
    _local.identity = identity
    return db


def _file_identity(path: Path) -> tuple[int, int]:
    # A file deleted and created again has a new inode, and a connection to the
    # old one would write into the deleted file.
    status = os.stat(path)
    return (status.st_dev, status.st_ino)


class Statement(NamedTuple):
    """One queued write: SQL with named parameters, for one ledger file.

    ``prepare`` creates the file when it is missing. A batch with an ``urgent``
    statement is committed after :data:`URGENT_DELAY_S` instead of the batch delay.
    """

    path: Path
    sql: str
    parameters: dict[str, Any]
    description: str
    prepare: Callable[[], None]
    urgent: bool = False


class BackgroundWriter:
    """One daemon thread that commits queued statements in batches, in order.

    The thread starts with the first statement and ends after :data:`IDLE_EXIT_S`
    seconds without any, so an idle kernel keeps no extra thread. When no thread
    can be started (a thread limit, or interpreter shutdown on Python 3.12), the
    caller's thread writes instead. A failed batch is retried one statement at a
    time, unless another process holds the file's lock, and each failure is logged.
    """

    def __init__(self, batch_delay_s: float = BATCH_DELAY_S) -> None:
        self.batch_delay_s = batch_delay_s
        self._condition = threading.Condition()
        self._queue: list[Statement] = []
        # Statements queued or being written; flush() waits for zero.
        self._unfinished = 0
        self._flush_requests = 0
        self._urgent = False
        self._thread: threading.Thread | None = None
        self._stopping = False

    def submit(self, statement: Statement) -> None:
        """Queue *statement* and return at once."""
        with self._condition:
            self._unfinished += 1
            self._queue.append(statement)
            self._urgent = self._urgent or statement.urgent
            if self._thread is None:
                started = self._start_thread()
            else:
                started = True
                if len(self._queue) == 1 or statement.urgent:
                    # Wake the thread. Other statements join its batch without
                    # waking it, because each wake-up takes the GIL from the caller.
                    self._condition.notify_all()
        if not started:
            self._write_queue_here()

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
            thread_alive = self._thread is not None and self._thread.is_alive()
            if thread_alive:
                self._flush_requests += 1
                self._condition.notify_all()
                try:
                    return self._condition.wait_for(
                        lambda: self._unfinished == 0, timeout
                    )
                finally:
                    self._flush_requests -= 1
        self._write_queue_here()
        return True

    def stop(self, timeout: float | None = EXIT_FLUSH_TIMEOUT_S) -> None:
        """Write the queued statements, then end the thread.

        Waits at most *timeout* seconds. A later :meth:`submit` starts a new thread.
        """
        with self._condition:
            thread = self._thread
            self._stopping = True
            self._condition.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._condition:
            self._stopping = False

    def reset_after_fork(self) -> None:
        # A forked child has no writer thread, and the parent writes its own queue.
        self._condition = threading.Condition()
        self._queue = []
        self._unfinished = 0
        self._flush_requests = 0
        self._urgent = False
        self._thread = None
        self._stopping = False

    def _start_thread(self) -> bool:
        # Called with the lock held.
        thread = threading.Thread(
            target=self._run, name="cocalc-ledger-writer", daemon=True
        )
        try:
            thread.start()
        except RuntimeError as error:
            logger.warning("cannot start the ledger writer thread: %s", error)
            return False
        self._thread = thread
        return True

    def _write_queue_here(self) -> None:
        """Write what is queued in the caller's thread, when no writer thread runs."""
        with self._condition:
            batch, self._queue = self._queue, []
            self._urgent = False
        try:
            _write(batch)
        finally:
            with self._condition:
                self._unfinished -= len(batch)
                self._condition.notify_all()

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
                # This is decided under the lock, so submit() finds None and
                # starts a new thread for any statement queued after this.
                self._thread = None
                return None
            # Collect what else arrives within the delay, unless someone waits.
            # An urgent statement shortens the delay, and the final state of a
            # short command then still joins its start in one commit.
            started = time.monotonic()
            while not (self._flush_requests or self._stopping):
                delay = URGENT_DELAY_S if self._urgent else self.batch_delay_s
                remaining = started + delay - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
            batch, self._queue = self._queue, []
            self._urgent = False
            return batch


def _write(batch: list[Statement]) -> None:
    """Commit *batch*, one transaction per run of statements for the same file."""
    start = 0
    while start < len(batch):
        end = start
        while end < len(batch) and batch[end].path == batch[start].path:
            end += 1
        _write_group(batch[start:end])
        start = end


def _write_group(group: list[Statement]) -> None:
    try:
        _commit(group)
        return
    except (OSError, sqlite3.Error) as error:
        if len(group) == 1 or _is_busy(error):
            # Retrying a locked file once per statement would multiply the wait.
            for statement in group:
                _log_failure(statement, error)
            return

    # Find the statement that fails, and keep the others.
    for statement in group:
        try:
            _commit([statement])
        except (OSError, sqlite3.Error) as error:
            _log_failure(statement, error)


def _commit(statements: list[Statement]) -> None:
    try:
        db = thread_connection(statements[0].path)
    except FileNotFoundError:
        # Deleted since it was prepared: create it again, schema and mode included.
        statements[0].prepare()
        db = thread_connection(statements[0].path)
    with db:
        for statement in statements:
            db.execute(statement.sql, statement.parameters)


def _is_busy(error: Exception) -> bool:
    text = str(error)
    return isinstance(error, sqlite3.OperationalError) and (
        "locked" in text or "busy" in text
    )


def _log_failure(statement: Statement, error: Exception) -> None:
    logger.warning(
        "writing the job ledger %s failed (%s): %s",
        statement.path,
        statement.description,
        error,
    )


def _flush_at_child_exit(writer: BackgroundWriter) -> None:
    # multiprocessing ends its forked children with os._exit, which skips atexit,
    # but runs its own finalizers first.
    multiprocessing.util.Finalize(
        None, writer.flush, args=(EXIT_FLUSH_TIMEOUT_S,), exitpriority=0
    )


writer = BackgroundWriter()
os.register_at_fork(after_in_child=writer.reset_after_fork)
multiprocessing.util.register_after_fork(writer, _flush_at_child_exit)
atexit.register(writer.flush, EXIT_FLUSH_TIMEOUT_S)
