"""A background job started by the magic keeps updating while the kernel is busy.

A real kernel runs ``%cocalc exec --bg``, then a cell that sleeps. The fake CoCalc
server records when each poll arrives. The job's display must reach "completed"
inside the sleep, through ``update_display_data`` only (no widgets: ipywidgets is
blocked in the kernel), and polling must stop when the job ends.
"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from jupyter_client.manager import start_new_kernel

from tests.support.fake_server import API_KEY, PROJECT_ID, FakeCoCalc

JOB_ID = "0b9f0e3c-5555-6666-7777-444444444444"
JOB_SECONDS = 2.0
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
        return {
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


@pytest.fixture
def fake():
    with FakeCoCalc() as server:
        job = ScriptedJob()
        server.on("system.exec", job.reply)
        server.script("projects.state", {"state": "running"})
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
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    manager, client = start_new_kernel(
        kernel_name="python3", env=env, cwd=str(tmp_path)
    )
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


def test_bg_job_advances_while_kernel_busy(fake, kernel):
    run_cell(kernel, "import sys\nsys.modules['ipywidgets'] = None")
    loading = run_cell(kernel, "%load_ext cocalc_magics")
    started = run_cell(kernel, "%cocalc exec --bg -- sleep 2; echo ok")
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

    completed_at = fake.job.completed_sent
    assert completed_at is not None
    assert busy_started < completed_at < busy_ended
    assert [t for t in polls if t > completed_at + 0.05] == []

    first = [m for _, m in started if m["msg_type"] == "display_data"]
    assert first, "the --bg cell showed no display"
    display_id = first[0]["content"]["transient"]["display_id"]
    assert "running" in first[0]["content"]["data"]["text/plain"]

    updates = [
        (arrived, message)
        for arrived, message in messages
        if message["msg_type"] == "update_display_data"
        and message["content"]["transient"]["display_id"] == display_id
    ]
    final = [
        arrived
        for arrived, message in updates
        if "completed, exit 0" in message["content"]["data"]["text/plain"]
    ]
    assert final, "no display update showed the job completed"
    assert final[0] < busy_ended - 1.0
    # The busy cell's own output contains no stream text of the job.
    streams = [m for _, m in messages if m["msg_type"] == "stream"]
    assert streams == []

    everything = json.dumps([m for _, m in loading + started + messages], default=str)
    assert "widget-view" not in everything
    assert "ImportError" not in everything
    assert API_KEY not in everything
