"""Ctrl-C while the start request of a job is on the wire: the job id is not lost.

The start reply is delayed by a fake server (a real socket), because the local
server replies to a start at once. The job layer runs in a child process, which the
test interrupts with a real SIGINT while that process waits for the reply.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.support.fake_server import PROJECT_ID, FakeCoCalc, Reply
from tests.support.local_server import wait_until

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="sends SIGINT to a child process"
)

JOB_ID = "0b9f0e3c-2f4e-4a63-9f3c-1d2e3f4a5b6c"
PID = 4242
START_DELAY_S = 3.0

CHILD = """
import json, sys
from cocalc_magics.api import Connection
from cocalc_magics.jobs import JobInterrupted, JobLedger, run_job

connection = Connection(host=sys.argv[1], api_key=sys.argv[2], project_id=sys.argv[3])
ledger = JobLedger(sys.argv[4])
print("ready", flush=True)
try:
    run_job(connection, "sleep 100", ledger=ledger, grace_s=(2, 2, 2), show=False)
    outcome = {"outcome": "returned"}
except JobInterrupted as error:
    outcome = {"outcome": "interrupted", "job_id": error.job.job_id,
               "status": error.job.status, "signals": error.job.signals_sent}
except KeyboardInterrupt:
    outcome = {"outcome": "keyboard interrupt"}
entries = [entry.job_id for entry in ledger.entries()]
print(json.dumps({**outcome, "ledger": entries}), flush=True)
"""


class FakeJob:
    """Replies of a project whose async job runs until it gets a signal."""

    def __init__(self) -> None:
        self.signals: list[dict] = []
        self.lock = threading.Lock()

    def record(self, status: str) -> dict:
        return {
            "type": "async",
            "job_id": JOB_ID,
            "status": status,
            "start": 1767259800000,
            "pid": PID,
            "stdout": "",
            "stderr": "",
            "exit_code": 0,
        }

    def exec(self, request):
        options = request.args[0]
        if options.get("async_call"):
            return Reply(self.record("running"), delay=START_DELAY_S)
        with self.lock:
            ended = bool(self.signals)
        # CoCalc reports a job killed by a signal as completed with exit code 0.
        return self.record("completed" if ended else "running")

    def signal(self, request):
        with self.lock:
            self.signals.append(request.args[0])
        return {}


@pytest.fixture
def fake_job():
    job = FakeJob()
    with FakeCoCalc() as fake:
        fake.on("system.exec", job.exec)
        fake.on("system.signal", job.signal)
        yield fake, job


def start_child(fake, tmp_path) -> subprocess.Popen:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            fake.url,
            fake.api_key,
            PROJECT_ID,
            str(tmp_path / "jobs.sqlite3"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "ready"
    return child


def interrupt_during_start(fake, child, times: int) -> None:
    def start_sent():
        return any(
            r.args[0].get("async_call") for r in fake.requests_for("system.exec")
        )

    wait_until(start_sent, timeout=30)
    for _ in range(times):
        os.kill(child.pid, signal.SIGINT)
        time.sleep(0.3)


def finish(child) -> tuple[dict, str]:
    stdout, stderr = child.communicate(timeout=60)
    assert child.returncode == 0, stderr
    return json.loads(stdout.strip().splitlines()[-1]), stderr


def test_interrupt_during_start_stops_job(fake_job, tmp_path):
    fake, job = fake_job
    child = start_child(fake, tmp_path)
    interrupt_during_start(fake, child, times=1)
    outcome, stderr = finish(child)

    assert outcome["outcome"] == "interrupted"
    assert outcome["job_id"] == JOB_ID
    assert outcome["status"] == "killed"
    assert outcome["signals"] == ["SIGINT"]
    assert outcome["ledger"] == [JOB_ID]
    assert job.signals == [{"signal": 2, "pid": -PID}]
    assert "waiting for the job id" in stderr
    assert JOB_ID in stderr


def test_second_interrupt_abandons_start(fake_job, tmp_path):
    fake, job = fake_job
    child = start_child(fake, tmp_path)
    interrupt_during_start(fake, child, times=2)
    outcome, stderr = finish(child)

    assert outcome["outcome"] == "keyboard interrupt"
    assert outcome["ledger"] == []
    assert job.signals == []
    assert "may have started" in stderr
    assert "ps" in stderr
