"""Panels in a real kernel keep updating while another cell keeps the kernel busy.

A fake CoCalc server on loopback records when each request arrives. The first cell
starts an async job (running for 2 s, then completed) and shows the jobs panel; the
second cell sleeps. The job's polls, and the widget update that shows the job
completed, must happen inside the sleep, and polling must end with the job.
"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from jupyter_client.manager import start_new_kernel

from tests.support.fake_server import API_KEY, PROJECT_ID, FakeCoCalc

JOB_ID = "0b9f0e3c-1111-2222-3333-444444444444"
JOB_SECONDS = 2.0
POLL_INTERVAL = 0.5
SLEEP_SECONDS = 8


class ScriptedJob:
    """A job that runs for JOB_SECONDS after its start request, then completes."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.completed_sent: float | None = None
        self._lock = threading.Lock()

    def reply(self, request) -> dict:
        options = request.args[0]
        with self._lock:
            if options.get("async_call"):
                self.started = time.time()
                return self._record("running")
            if time.time() - self.started < JOB_SECONDS:
                return self._record("running")
            if self.completed_sent is None:
                self.completed_sent = time.time()
            return self._record("completed", elapsed_s=JOB_SECONDS)

    def _record(self, status: str, **extra) -> dict:
        record = {
            "type": "async",
            "job_id": JOB_ID,
            "status": status,
            "start": int(self.started * 1000),
            "pid": 4242,
            "stdout": "ok\n" if status == "completed" else "",
            "stderr": "",
            "exit_code": 0,
            **extra,
        }
        return record


def project_row(request) -> dict:
    return {
        "projects_all": [
            {
                "project_id": PROJECT_ID,
                "title": "Fake project",
                "state": {"state": "running", "time": "2026-07-01T09:30:00.000Z"},
                "status": {},
                "settings": {"memory": 1000, "cores": 1, "disk_quota": 3000},
                "run_quota": {},
                "last_edited": "2026-07-01T09:30:00.000Z",
            }
        ]
    }


@pytest.fixture
def fake():
    with FakeCoCalc() as server:
        job = ScriptedJob()
        server.on("db.userQuery", project_row)
        server.on("system.exec", job.reply)
        server.job = job
        yield server


@pytest.fixture
def kernel(fake, tmp_path):
    env = {
        **os.environ,
        "COCALC_HOST": fake.url,
        "COCALC_API_KEY": API_KEY,
        "COCALC_PROJECT_ID": PROJECT_ID,
        "COCALC_MAGICS_DATA_DIR": str(tmp_path / "ledger"),
    }
    manager, client = start_new_kernel(kernel_name="python3", env=env, cwd=str(tmp_path))
    try:
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def run_cell(client, code: str, timeout: float = 60.0) -> list[tuple[float, dict]]:
    """Execute *code* and return its IOPub messages with their arrival times."""
    msg_id = client.execute(code)
    messages = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        message = client.get_iopub_msg(timeout=timeout)
        messages.append((time.time(), message))
        parent = message["parent_header"].get("msg_id")
        if (
            parent == msg_id
            and message["msg_type"] == "status"
            and message["content"]["execution_state"] == "idle"
        ):
            reply = client.get_shell_msg(timeout=timeout)
            assert reply["content"]["status"] == "ok", reply["content"]
            return messages
    raise AssertionError(f"cell did not finish within {timeout} s")


def test_job_status_advances_while_kernel_busy(fake, kernel):
    run_cell(
        kernel,
        "from cocalc_magics.api import Connection\n"
        "from cocalc_magics.panels import show_panel\n"
        "connection = Connection()\n"
        "job = connection.exec_async('sleep 2; echo ok')\n"
        f"panel = show_panel(connection, 'jobs', refresh_interval={POLL_INTERVAL},"
        " jobs=[job], ledger=None)",
    )
    busy_started = time.time()
    messages = run_cell(kernel, f"import time\ntime.sleep({SLEEP_SECONDS})")
    busy_ended = time.time()

    polls = [
        request.arrived
        for request in fake.requests_for("system.exec")
        if "async_get" in request.args[0]
    ]
    during = [t for t in polls if busy_started <= t <= busy_ended]
    assert during, f"no job poll while the busy cell ran; polls at {polls}"
    assert polls[0] < busy_started + POLL_INTERVAL + 1.0

    completed_at = fake.job.completed_sent
    assert completed_at is not None
    assert busy_started < completed_at < busy_ended
    assert [t for t in polls if t > completed_at] == []

    updates = [
        (arrived, message)
        for arrived, message in messages
        if message["msg_type"] == "comm_msg"
        and "data-status='completed'" in json.dumps(message["content"]["data"], default=str)
    ]
    assert updates, "no widget update showed the job completed"
    assert updates[0][0] < busy_ended - 1.0
    assert API_KEY not in json.dumps([message for _, message in messages], default=str)
