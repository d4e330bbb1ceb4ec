"""The job ledger: storage, lookups, concurrency, and what it never stores."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time

import pytest

from cocalc_magics.jobs import LedgerEntry, default_ledger_path
from cocalc_magics.jobs.ledger import site_of


def entry(job_id: str, **values) -> LedgerEntry:
    fields = {
        "site": "https://cocalc.example",
        "project_id": "p-1",
        "job_id": job_id,
        "status": "running",
        "created_ms": 1,
        "updated_ms": 1,
    }
    fields.update(values)
    return LedgerEntry(**fields)


def test_default_path_from_environment(data_dir):
    assert default_ledger_path() == data_dir / "jobs.sqlite3"


def test_file_is_owner_only(ledger):
    mode = stat.S_IMODE(os.stat(ledger.path).st_mode)
    assert mode == 0o600
    directory_mode = stat.S_IMODE(os.stat(ledger.path.parent).st_mode)
    assert directory_mode == 0o700


def test_round_trip(ledger):
    stored = entry(
        "aaaa-1",
        pid=12,
        command="echo 'ü' > f",
        stdout="out\n",
        signals=["SIGINT", "SIGTERM"],
        stats=[{"timestamp": 5, "mem_rss": 1.5, "cpu_pct": 3.0, "cpu_secs": 0.1}],
    )
    ledger.add(stored)
    loaded = ledger.get(stored.site, "p-1", "aaaa-1")
    assert loaded == stored


def test_final_entry_not_overwritten(ledger):
    ledger.add(entry("job-1"))
    assert ledger.update(
        "https://cocalc.example", "p-1", "job-1", status="completed", final=True
    )
    changed = ledger.update(
        "https://cocalc.example", "p-1", "job-1", status="lost", final=True
    )
    assert not changed
    assert ledger.get("https://cocalc.example", "p-1", "job-1").status == "completed"


def test_unknown_column_rejected(ledger):
    with pytest.raises(ValueError, match="unknown ledger columns"):
        ledger.update("s", "p", "j", api_key="x")


def test_find_by_prefix(ledger):
    ledger.add(entry("abc123", created_ms=1))
    ledger.add(entry("abd456", created_ms=2))
    ledger.add(entry("a_c%", created_ms=3))
    assert [e.job_id for e in ledger.find("ab")] == ["abd456", "abc123"]
    assert [e.job_id for e in ledger.find("abc")] == ["abc123"]
    # LIKE wildcards in a prefix are literal characters.
    assert [e.job_id for e in ledger.find("a_")] == ["a_c%"]
    assert ledger.find("zz") == []


def test_entries_filtered_and_limited(ledger):
    ledger.add(entry("one", created_ms=1, status="completed"))
    ledger.add(entry("two", created_ms=2))
    ledger.add(entry("three", created_ms=3, site="http://127.0.0.1:9"))
    assert [e.job_id for e in ledger.entries()] == ["three", "two", "one"]
    assert [e.job_id for e in ledger.entries(limit=1)] == ["three"]
    running = ledger.entries(site="https://cocalc.example", statuses=["running"])
    assert [e.job_id for e in running] == ["two"]


def test_forget(ledger):
    ledger.add(entry("gone"))
    assert ledger.forget("https://cocalc.example", "p-1", "gone")
    assert not ledger.forget("https://cocalc.example", "p-1", "gone")


def test_site_without_credentials():
    assert site_of("https://user:secret@cocalc.example:8443/base/?k=v#f") == (
        "https://cocalc.example:8443/base"
    )
    assert site_of("http://[::1]:5000") == "http://[::1]:5000"


def test_threads_write_concurrently(ledger):
    def write(thread: int) -> None:
        for index in range(20):
            job_id = f"t{thread}-{index}"
            ledger.add(entry(job_id, created_ms=index))
            ledger.update("https://cocalc.example", "p-1", job_id, stdout="x" * index)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ledger.entries()) == 160


WRITER = """
import sys
from cocalc_magics.jobs import JobLedger, LedgerEntry
ledger = JobLedger(sys.argv[1])
for index in range(40):
    ledger.add(LedgerEntry(site="s", project_id="p", job_id=f"{sys.argv[2]}-{index}",
                           status="running", created_ms=index, updated_ms=index))
"""


def test_two_processes_write_concurrently(ledger):
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(ledger.path), name])
        for name in ("first", "second")
    ]
    for writer in writers:
        assert writer.wait(timeout=60) == 0
    names = {e.job_id.split("-")[0] for e in ledger.entries()}
    assert names == {"first", "second"}
    assert len(ledger.entries()) == 80


DAY_MS = 24 * 3600 * 1000


def test_prune_old_and_excess_finished(ledger):
    now = int(time.time() * 1000)
    old = now - 40 * DAY_MS
    ledger.add(entry("old-done", created_ms=old, updated_ms=old, final=True))
    ledger.add(entry("old-running", created_ms=old, updated_ms=old))
    for index in range(5):
        ledger.add(
            entry(f"done-{index}", created_ms=now - index, updated_ms=now, final=True)
        )

    assert ledger.prune(max_count=3) == 3
    remaining = {e.job_id for e in ledger.entries()}
    assert remaining == {"old-running", "done-0", "done-1", "done-2"}


def test_opening_ledger_prunes_it(ledger):
    old = int(time.time() * 1000) - 40 * DAY_MS
    ledger.add(entry("old-done", created_ms=old, updated_ms=old, final=True))
    ledger.add(entry("recent-done", final=True, updated_ms=int(time.time() * 1000)))
    opener = (
        "import sys; from cocalc_magics.jobs import JobLedger; JobLedger(sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", opener, str(ledger.path)], check=True)
    assert [e.job_id for e in ledger.entries()] == ["recent-done"]
