"""The local server dies in the middle of a call made by the magics.

Each test starts its own server child process, because the test kills it with
SIGKILL, as a crash or an out-of-memory kill would. The processes the server had
started (the job's shell, spare kernels) are then killed by the test itself. What
the user sees must be one short message, and the id of any job that was running,
so the work can be found again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import psutil
import pytest

from tests.faults.conftest import register_server, run_cell
from tests.faults.test_magic_faults import interrupt_after
from tests.support.local_server import RunningServer, start_server, wait_until


@pytest.fixture
def doomed_server(tmp_path, shell, magics):
    """A local server child that the test may kill, with the magics connected."""
    from cocalc_magics.api import Connection

    server = register_server(start_server(tmp_path / "doomed"))
    magics.session.replace(
        Connection(
            host=server.url, api_key=server.api_key, project_id=server.project_id
        )
    )
    yield server
    crash(server)
    server.process.stop()


def crash(server: RunningServer) -> None:
    """SIGKILL the server, then every process it had started."""
    try:
        process = psutil.Process(server.process.pid)
        children = process.children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for victim in [process, *children]:
        with contextlib.suppress(psutil.NoSuchProcess):
            victim.send_signal(signal.SIGKILL)
    # Kernels and jobs run in their own process groups; end those groups too.
    for child in children:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
    psutil.wait_procs([process, *children], timeout=10)


def crash_when(condition, server: RunningServer) -> threading.Thread:
    """Crash ``server`` from a thread as soon as ``condition()`` holds."""

    def watch() -> None:
        wait_until(condition, timeout=30)
        crash(server)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def marker_file(server: RunningServer, name: str):
    return server.data_dir / "projects" / server.project_id / name


def test_killed_during_blocking_call(shell, doomed_server):
    marker = marker_file(doomed_server, "blocking-started")
    args = f'{{"command": "touch {marker} && sleep 60", "bash": true, "timeout": 90}}'
    crasher = crash_when(marker.exists, doomed_server)
    started = time.monotonic()
    run = run_cell(shell, f"%cocalc call --timeout 90 system.exec '{args}'")
    crasher.join(10)

    assert time.monotonic() - started < 30
    assert type(run.error).__name__ == "CoCalcMagicError", run.text
    shown = run.stdout + run.stderr
    assert "system.exec" in shown
    assert "Hint:" in shown
    # The request reached the server, so the user is told that the work may run.
    assert "may" in shown.split("Hint:")[1]
    assert "Traceback" not in shown


def test_killed_during_long_poll_names_job(shell, doomed_server):
    marker = marker_file(doomed_server, "job-started")
    crasher = crash_when(marker.exists, doomed_server)
    interrupt_after_crash(crasher, seconds=3.0)
    run = run_cell(shell, f"%cocalc exec --timeout 600 touch {marker}; sleep 60")

    job_id = only_job_id(doomed_server, shell)
    assert job_id in run.text, run.text
    assert "Traceback" not in run.stdout


def test_killed_during_detached_poll_names_job(shell, doomed_server):
    marker = marker_file(doomed_server, "detached-started")
    crasher = crash_when(marker.exists, doomed_server)
    interrupt_after_crash(crasher, seconds=3.0)
    run = run_cell(
        shell, f"%cocalc exec --detach --timeout 600 touch {marker}; sleep 60"
    )

    job_id = only_job_id(doomed_server, shell)
    assert f"Detached: job {job_id} keeps running" in run.text, run.text


def test_killed_during_kernel_run(shell, doomed_server):
    marker = marker_file(doomed_server, "kernel-started")
    crasher = crash_when(marker.exists, doomed_server)
    code = f"open({str(marker)!r}, 'w').close()\nimport time\ntime.sleep(60)"
    run = run_cell(shell, f"%%cocalc_exec --kernel python3\n{code}")
    crasher.join(10)

    assert type(run.error).__name__ == "CoCalcMagicError", run.text
    shown = run.stdout + run.stderr
    assert "jupyter execute" in shown
    assert "Hint:" in shown
    assert "Traceback" not in shown


def interrupt_after_crash(crasher: threading.Thread, seconds: float) -> None:
    """Press Ctrl-C ``seconds`` after the crash, as a user tired of waiting would."""

    def later() -> None:
        crasher.join(60)
        interrupt_after(seconds)

    threading.Thread(target=later, daemon=True).start()


def only_job_id(server: RunningServer, shell) -> str:
    """The id of the one job in the suite's ledger for this server's project."""
    from cocalc_magics.jobs import JobLedger

    entries = [
        entry
        for entry in JobLedger().entries()
        if entry.project_id == server.project_id
    ]
    assert len(entries) == 1, entries
    return entries[0].job_id
