"""The ledger's background writer: batches, order, flushing, failures, threads, fork."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import time

import pytest

from cocalc_magics.jobs import LedgerEntry, storage
from cocalc_magics.jobs.ledger import flush_pending_writes, stop_writer
from cocalc_magics.jobs.storage import BackgroundWriter, Statement
from tests.support.local_server import wait_until

SITE = "https://cocalc.example"
# Long enough that nothing is written unless a flush requests it.
NEVER_S = 60.0


def entry(job_id: str, **values) -> LedgerEntry:
    fields = {
        "site": SITE,
        "project_id": "p-1",
        "job_id": job_id,
        "status": "running",
        "created_ms": 1,
        "updated_ms": 1,
    }
    fields.update(values)
    return LedgerEntry(**fields)


def stored_job_ids(path) -> list[str]:
    """Read the file directly, without the ledger's flush of queued writes."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT job_id FROM jobs ORDER BY job_id").fetchall()
    return [job_id for (job_id,) in rows]


def stored_statuses(path) -> list[str]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT status FROM jobs ORDER BY job_id").fetchall()
    return [status for (status,) in rows]


def insert(path, job_id: str) -> Statement:
    return Statement(
        path,
        "INSERT INTO jobs (site, project_id, job_id, status, created_ms, updated_ms) "
        "VALUES (:site, 'p-1', :job_id, 'running', 1, 1)",
        {"site": SITE, "job_id": job_id},
        f"add job {job_id}",
        prepare=lambda: None,
    )


def writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "cocalc-ledger-writer"]


@pytest.fixture
def slow_writer(monkeypatch):
    """The process's writer, collecting for a minute unless flushed."""
    flush_pending_writes()
    monkeypatch.setattr(storage.writer, "batch_delay_s", NEVER_S)
    yield storage.writer
    flush_pending_writes()


def test_queued_add_visible_to_reads(ledger):
    ledger.add_later(entry("queued"))
    assert ledger.get(SITE, "p-1", "queued") == entry("queued")


def test_queued_writes_keep_their_order(ledger):
    ledger.add_later(entry("job-1"))
    ledger.update_later(SITE, "p-1", "job-1", status="completed", final=True)
    ledger.update_later(SITE, "p-1", "job-1", status="lost", final=True)
    assert ledger.get(SITE, "p-1", "job-1").status == "completed"


def test_unknown_column_rejected_when_queued(ledger):
    with pytest.raises(ValueError, match="unknown ledger columns"):
        ledger.update_later(SITE, "p-1", "job-1", api_key="x")


def test_updates_wait_for_batch(slow_writer, ledger):
    ledger.add(entry("first"))
    ledger.add(entry("second"))
    ledger.update_later(SITE, "p-1", "first", status="completed", final=True)
    ledger.update_later(SITE, "p-1", "second", status="failed", final=True)
    assert stored_statuses(ledger.path) == ["running", "running"]
    assert flush_pending_writes(timeout=10)
    assert stored_statuses(ledger.path) == ["completed", "failed"]


def test_started_job_written_without_delay(slow_writer, ledger):
    ledger.add_later(entry("started"))
    wait_until(lambda: stored_job_ids(ledger.path) == ["started"], timeout=10)


def test_direct_write_flushes_queue_first(slow_writer, ledger):
    ledger.add_later(entry("job-1"))
    # A direct update of a queued entry must find it.
    assert ledger.update(SITE, "p-1", "job-1", status="completed", final=True)
    assert stored_job_ids(ledger.path) == ["job-1"]


def test_failed_statement_keeps_others(slow_writer, ledger, caplog):
    caplog.set_level(logging.WARNING, logger="cocalc_magics.jobs.storage")
    slow_writer.submit(insert(ledger.path, "good-1"))
    slow_writer.submit(
        Statement(
            ledger.path,
            "INSERT INTO missing VALUES (1)",
            {},
            "add job bad",
            prepare=lambda: None,
        )
    )
    slow_writer.submit(insert(ledger.path, "good-2"))
    assert flush_pending_writes(timeout=10)
    assert stored_job_ids(ledger.path) == ["good-1", "good-2"]
    assert "add job bad" in caplog.text
    assert "no such table: missing" in caplog.text


def test_batch_spanning_two_files(slow_writer, tmp_path, ledger):
    from cocalc_magics.jobs import JobLedger

    other = JobLedger(tmp_path / "other" / "jobs.sqlite3")
    ledger.add_later(entry("a"))
    other.add_later(entry("b"))
    ledger.add_later(entry("c"))
    assert flush_pending_writes(timeout=10)
    assert stored_job_ids(ledger.path) == ["a", "c"]
    assert stored_job_ids(other.path) == ["b"]


def test_thread_ends_when_idle(ledger, monkeypatch):
    flush_pending_writes()
    monkeypatch.setattr(storage, "IDLE_EXIT_S", 0.05)
    ledger.add_later(entry("job-1"))
    assert flush_pending_writes(timeout=10)
    deadline = time.monotonic() + 10
    while writer_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert writer_threads() == []

    # The next write starts a new thread.
    ledger.add_later(entry("job-2"))
    assert ledger.get(SITE, "p-1", "job-2") is not None


def test_stop_writes_queue_and_ends_thread(slow_writer, ledger):
    ledger.add_later(entry("job-1"))
    stop_writer()
    assert writer_threads() == []
    assert stored_job_ids(ledger.path) == ["job-1"]


def test_flush_timeout_reports_false(tmp_path):
    blocked = BackgroundWriter(batch_delay_s=0)
    path = tmp_path / "locked.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x)")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        blocked.submit(
            Statement(path, "INSERT INTO t VALUES (1)", {}, "blocked", lambda: None)
        )
        assert blocked.flush(timeout=0.2) is False
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert blocked.flush(timeout=60)
    blocked.stop()


def test_exit_flushes_queue(data_dir):
    script = """
from cocalc_magics.jobs import JobLedger, LedgerEntry, storage
storage.writer.batch_delay_s = 600
JobLedger().add_later(LedgerEntry(site="s", project_id="p", job_id="at-exit",
                                  status="running", created_ms=1, updated_ms=1))
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert stored_job_ids(data_dir / "jobs.sqlite3") == ["at-exit"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_writes_only_its_own(slow_writer, tmp_path, ledger):
    from cocalc_magics.jobs import JobLedger

    child_file = JobLedger(tmp_path / "child" / "jobs.sqlite3")
    ledger.add(entry("parent"))
    ledger.update_later(SITE, "p-1", "parent", status="completed", final=True)

    pid = os.fork()
    if pid == 0:
        # The child: its own queue and thread, without the parent's statement.
        try:
            child_file.add_later(entry("child"))
            written = flush_pending_writes(timeout=30)
            os._exit(0 if written else 1)
        except BaseException:  # noqa: BLE001 - a forked child must never return
            os._exit(2)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert stored_job_ids(child_file.path) == ["child"]
    assert stored_statuses(ledger.path) == ["running"]
    assert flush_pending_writes(timeout=10)
    assert stored_statuses(ledger.path) == ["completed"]


def test_deleted_ledger_recreated_owner_only(ledger):
    ledger.add_later(entry("before"))
    assert flush_pending_writes(timeout=10)
    shutil.rmtree(ledger.path.parent)

    # The writer thread's connection still points at the deleted file.
    ledger.add_later(entry("after"))
    assert flush_pending_writes(timeout=10)
    assert stored_job_ids(ledger.path) == ["after"]
    assert stat.S_IMODE(os.stat(ledger.path).st_mode) == 0o600


MULTIPROCESSING_CHILD = """
import multiprocessing, sys
from cocalc_magics.jobs import JobLedger, LedgerEntry, storage

def finish(path):
    ledger = JobLedger(path)
    ledger.add(LedgerEntry(site="s", project_id="p", job_id="forked",
                           status="running", created_ms=1, updated_ms=1))
    storage.writer.batch_delay_s = 600
    ledger.update_later("s", "p", "forked", status="completed", final=True)

if __name__ == "__main__":
    child = multiprocessing.get_context("fork").Process(target=finish, args=(sys.argv[1],))
    child.start()
    child.join(60)
    sys.exit(child.exitcode)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_multiprocessing_child_flushes_at_exit(data_dir):
    path = data_dir / "jobs.sqlite3"
    subprocess.run(
        [sys.executable, "-c", MULTIPROCESSING_CHILD, str(path)],
        check=True,
        timeout=120,
    )
    assert stored_statuses(path) == ["completed"]


THREAD_LIMIT = """
import logging, resource, sys, threading
from cocalc_magics.jobs import JobLedger, LedgerEntry

logging.basicConfig(level=logging.WARNING)

ledger = JobLedger(sys.argv[1])
# A stack larger than the address space left makes every thread start fail.
threading.stack_size(512 * 1024 * 1024)
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
with open("/proc/self/statm") as statm:
    used = int(statm.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (used + 256 * 1024 * 1024, hard))
ledger.add_later(LedgerEntry(site="s", project_id="p", job_id="no-thread",
                             status="running", created_ms=1, updated_ms=1))
print([entry.job_id for entry in ledger.entries()])
"""


@pytest.mark.skipif(sys.platform != "linux", reason="uses /proc and RLIMIT_AS")
def test_no_writer_thread_writes_inline(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", THREAD_LIMIT, str(tmp_path / "jobs.sqlite3")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['no-thread']"
    assert "cannot start the ledger writer thread" in result.stderr


def test_locked_ledger_read_does_not_wait_for_lock(ledger):
    ledger.add(entry("job-1"))
    holder = sqlite3.connect(ledger.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        ledger.update_later(SITE, "p-1", "job-1", status="completed", final=True)
        # The queued update waits for the lock; the read goes on without it.
        assert [e.status for e in ledger.entries()] == ["running"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert flush_pending_writes(timeout=60)
    assert ledger.get(SITE, "p-1", "job-1").status == "completed"
