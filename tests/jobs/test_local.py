"""Jobs on the real local server: streaming, stopping, timeouts, background jobs."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading

import pytest

from cocalc_magics.api import Connection
from cocalc_magics.jobs import (
    Job,
    JobInterrupted,
    JobReferenceError,
    active_watchers,
    find_job,
    job_stats,
    list_jobs,
    run_job,
    show_job,
    stop_job,
)
from cocalc_magics.jobs.ledger import flush_pending_writes
from tests.support.local_server import start_server, wait_until

FAST_GRACE = (1.0, 1.0, 3.0)


def test_foreground_streams_output(connection, ledger, capsys):
    job = run_job(
        connection,
        "for i in 1 2 3; do echo $i; sleep 0.4; done; echo oops >&2",
        ledger=ledger,
    )
    captured = capsys.readouterr()
    assert captured.out.startswith("1\n2\n3\n")
    assert captured.out.count("2\n") == 1
    assert "oops\n" in captured.err
    assert job.ok
    assert job.summary().startswith(f"CoCalc job {job.job_id[:8]}…: completed, exit 0")


def test_exit_code_kept(connection, ledger):
    job = run_job(connection, "echo bad >&2; exit 3", ledger=ledger)
    assert job.status == "completed"
    assert job.exit_code == 3
    assert not job.ok
    assert job.stderr == "bad\n"


@pytest.mark.parametrize(
    ("script", "stopped_by", "sent"),
    [
        ("echo ready; sleep 30", "SIGINT", ["SIGINT"]),
        ("trap '' INT; echo ready; sleep 30", "SIGTERM", ["SIGINT", "SIGTERM"]),
        (
            "trap '' INT TERM; echo ready; sleep 30",
            "SIGKILL",
            ["SIGINT", "SIGTERM", "SIGKILL"],
        ),
    ],
)
def test_stop_escalates(connection, ledger, script, stopped_by, sent):
    job = Job.start(connection, script, ledger=ledger, timeout=60)
    wait_until(lambda: "ready" in job.refresh().stdout)

    assert stop_job(job, grace_s=FAST_GRACE) == stopped_by
    assert job.status == "killed"
    assert job.signals_sent == sent
    assert job.stdout == "ready\n"
    assert f"stopped after {stopped_by}" in job.summary()
    stored = ledger.get(job.site, job.project_id, job.job_id)
    assert stored.status == "killed"
    assert stored.signals == sent


def _interrupt_when_ready(connection, ledger):
    """Send SIGINT to this process once the newest ledger job printed 'ready'."""

    def wait_and_interrupt():
        def ready():
            entries = ledger.entries(limit=1)
            if not entries:
                return False
            record = connection.async_get(entries[0].job_id)
            return "ready" in record.stdout

        wait_until(ready, timeout=20)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=wait_and_interrupt, daemon=True)
    thread.start()
    return thread


def test_ctrl_c_stops_remote_process(local_server, ledger, capsys):
    # The watcher thread polls with its own connection.
    with (
        Connection(
            host=local_server.url,
            api_key=local_server.api_key,
            project_id=local_server.project_id,
        ) as own,
        Connection(
            host=local_server.url,
            api_key=local_server.api_key,
            project_id=local_server.project_id,
        ) as other,
    ):
        thread = _interrupt_when_ready(other, ledger)
        with pytest.raises(JobInterrupted) as raised:
            run_job(
                own,
                "trap '' INT; echo ready; sleep 30",
                ledger=ledger,
                grace_s=FAST_GRACE,
            )
        thread.join()

    job = raised.value.job
    assert job.status == "killed"
    assert job.stopped_by == "SIGTERM"
    assert job.stdout == "ready\n"
    err = capsys.readouterr().err
    assert f"Interrupted: stopping job {job.job_id}" in err
    assert "sending SIGINT" in err
    assert "sending SIGTERM" in err


def test_ctrl_c_detaches(local_server, ledger, data_dir):
    with (
        Connection(
            host=local_server.url,
            api_key=local_server.api_key,
            project_id=local_server.project_id,
        ) as own,
        Connection(
            host=local_server.url,
            api_key=local_server.api_key,
            project_id=local_server.project_id,
        ) as other,
    ):
        thread = _interrupt_when_ready(other, ledger)
        job = run_job(
            own,
            "echo ready; sleep 2; echo finished",
            ledger=ledger,
            on_interrupt="detach",
        )
        thread.join()
        assert job.running
        assert job._watcher in active_watchers()

        # Re-attach from another process through the ledger and a job id prefix.
        code = (
            "import sys\n"
            "from cocalc_magics.api import Connection\n"
            "from cocalc_magics.jobs import show_job\n"
            "c = Connection(host=sys.argv[1], api_key=sys.argv[2], project_id=sys.argv[3])\n"
            "job = show_job(c, sys.argv[4], wait=True)\n"
            "print('STATUS', job.status, repr(job.stdout))\n"
        )
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                local_server.url,
                local_server.api_key,
                local_server.project_id,
                job.short_id,
            ],
            capture_output=True,
            check=False,
            text=True,
            timeout=60,
            env={**os.environ},
        )
        assert child.returncode == 0, child.stderr
        assert "STATUS completed 'ready\\nfinished\\n'" in child.stdout

        job.wait(timeout=20)
        assert job.stdout == "ready\nfinished\n"


def test_timed_out_job_keeps_partial_output(connection, ledger):
    job = run_job(connection, "echo partial; sleep 10", timeout=1.5, ledger=ledger)
    assert job.status == "timed out"
    assert job.exit_code is None
    assert job.stdout == "partial\n"
    assert job.output_partial
    assert "killed command" in job.message
    stored = ledger.get(job.site, job.project_id, job.job_id)
    assert stored.status == "timed out"
    assert stored.stdout == "partial\n"
    assert stored.final


def test_background_job_harvested(connection, ledger, capsys):
    job = run_job(
        connection, "sleep 0.5; echo harvested", background=True, ledger=ledger
    )
    assert job.running
    assert "in the background" in capsys.readouterr().out

    wait_until(lambda: not job.running, timeout=20)
    stored = wait_until(lambda: ledger.get(job.site, job.project_id, job.job_id), 5)
    wait_until(lambda: ledger.get(job.site, job.project_id, job.job_id).final, 5)
    stored = ledger.get(job.site, job.project_id, job.job_id)
    assert stored.stdout == "harvested\n"
    assert stored.status == "completed"
    wait_until(lambda: job._watcher is None, 5)
    assert "completed" in capsys.readouterr().out


def test_many_jobs_at_once(connection, ledger):
    jobs = [
        run_job(
            connection, f"sleep 0.{n % 5}; echo job-{n}", background=True, ledger=ledger
        )
        for n in range(15)
    ]
    for job in jobs:
        job.wait(timeout=60)
    assert [job.stdout for job in jobs] == [f"job-{n}\n" for n in range(15)]
    wait_until(lambda: not active_watchers(), 10)
    statuses = {entry.status for entry in ledger.entries()}
    assert statuses == {"completed"}
    assert len(ledger.entries()) == 15


def test_evicted_job_reported_lost(tmp_path, ledger):
    server = start_server(
        tmp_path / "server", environment={"COCALC_PROJECT_ASYNC_EXEC_CACHE_MAX": "2"}
    )
    try:
        with Connection(
            host=server.url, api_key=server.api_key, project_id=server.project_id
        ) as client:
            first = Job.start(client, "echo early; sleep 30", ledger=ledger, timeout=60)
            wait_until(lambda: "early" in first.refresh().stdout)
            for _ in range(2):
                Job.start(client, "true", ledger=ledger)
            first.refresh()

            assert first.status == "lost"
            assert first.stdout == "early\n"
            found = find_job(client, first.job_id, ledger=ledger)
            assert found.status == "lost"
            assert found.command == "echo early; sleep 30"
            assert "no longer knows" in found.summary()
    finally:
        server.process.stop()


def test_stats_history(connection, ledger):
    job = run_job(
        connection,
        "python3 -c 'import time\nt=time.time()\nwhile time.time()-t<2.5: pass'",
        ledger=ledger,
    )
    assert len(job.stats) >= 2
    stats = job_stats(job)
    text = repr(stats)
    assert "CPU %" in text
    assert "memory MiB" in text
    # The plot needs matplotlib, which is optional; without it the table is all.
    png = stats._repr_png_()
    if importlib.util.find_spec("matplotlib") is None:
        assert png is None
    else:
        assert png.startswith(b"\x89PNG")
    assert max(sample.cpu_pct for sample in job.stats) > 10


def test_list_and_find_jobs(connection, ledger):
    first = run_job(connection, "echo first", ledger=ledger)
    second = run_job(connection, "echo '<b>second</b>'", ledger=ledger)
    table = list_jobs(connection, ledger=ledger)
    text = repr(table)
    assert text.splitlines()[0].split() == [
        "job",
        "status",
        "exit",
        "started",
        "elapsed",
        "command",
    ]
    assert text.index(second.short_id) < text.index(first.short_id)
    assert "&lt;b&gt;second" in table._repr_html_()
    assert "<b>second" not in table._repr_html_()

    assert find_job(connection, first.short_id, ledger=ledger).stdout == "first\n"
    with pytest.raises(JobReferenceError, match="no job 'ffffffff'"):
        find_job(connection, "ffffffff", ledger=ledger)
    with pytest.raises(JobReferenceError, match="no job id given"):
        find_job(connection, "  ", ledger=ledger)


def test_show_job_kill(connection, ledger):
    job = run_job(connection, "echo ready; sleep 30", background=True, ledger=ledger)
    wait_until(
        lambda: "ready" in ledger_stdout(ledger, job) or "ready" in job.stdout, 20
    )
    shown = show_job(
        connection, job.job_id, ledger=ledger, kill=True, grace_s=FAST_GRACE
    )
    assert shown.status == "killed"
    assert shown.stopped_by == "SIGINT"


def ledger_stdout(ledger, job):
    stored = ledger.get(job.site, job.project_id, job.job_id)
    return stored.stdout if stored else ""


def test_unknown_full_id_attached_from_server(connection, ledger):
    record = connection.exec_async("echo direct", timeout=10)
    job = find_job(connection, record.job_id, ledger=ledger)
    job.wait(timeout=20)
    assert job.stdout == "direct\n"
    assert ledger.get(job.site, job.project_id, job.job_id).final


def test_html_escapes_output(connection, ledger):
    job = run_job(connection, "echo '<script>x</script>'", ledger=ledger)
    page = job._repr_html_()
    assert "&lt;script&gt;" in page
    assert "<script>" not in page


def test_ledger_never_holds_key(connection, ledger, local_server):
    run_job(connection, "echo keyless", ledger=ledger)
    assert flush_pending_writes(timeout=30)
    data = b"".join(
        path.read_bytes() for path in ledger.path.parent.iterdir() if path.is_file()
    )
    assert local_server.api_key.encode() not in data
    assert b"keyless" in data


def test_listing_resumes_watching(connection, ledger):
    started = Job.start(connection, "sleep 0.8; echo later", ledger=ledger, timeout=30)
    del started

    table = list_jobs(connection, ledger=ledger)
    assert [job.status for job in table.jobs] == ["running"]
    assert len(active_watchers()) == 1

    def harvested():
        return ledger.entries()[0].final

    wait_until(harvested, timeout=20)
    stored = ledger.entries()[0]
    assert stored.status == "completed"
    assert stored.stdout == "later\n"


def test_live_wait_pauses_watcher(connection, ledger, capsys):
    job = run_job(
        connection, "echo one; sleep 0.8; echo two", background=True, ledger=ledger
    )
    job.wait(live=True, timeout=30)

    out = capsys.readouterr().out
    assert out.count("one\n") == 1
    assert out.count("two\n") == 1
    assert job.status == "completed"
    assert not active_watchers()


def test_invalid_arguments_rejected(connection, ledger):
    with pytest.raises(ValueError, match="on_interrupt must be 'stop' or 'detach'"):
        run_job(connection, "true", on_interrupt="ignore", ledger=ledger)
    job = run_job(connection, "sleep 5", background=True, ledger=ledger)
    with pytest.raises(ValueError, match="grace_s must be three positive numbers"):
        stop_job(job, grace_s=(1, 2))
    with pytest.raises(ValueError, match="unknown signal 'SIGFOO'"):
        job.signal("SIGFOO")
    job.kill(grace_s=FAST_GRACE)
    assert job.status == "killed"


def test_unusable_ledger_does_not_stop_job(connection, tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("COCALC_MAGICS_DATA_DIR", str(blocker / "data"))

    job = run_job(connection, "echo still works")
    assert job.stdout == "still works\n"
    assert job.ledger is None
    assert "the job ledger failed" in caplog.text
