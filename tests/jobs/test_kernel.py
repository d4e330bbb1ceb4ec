"""Jobs in a real Jupyter kernel driven by nbclient: background displays that update
while another cell runs, and a ledger that survives a kernel restart."""

from __future__ import annotations

import json
import time

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.util import run_sync

from tests.jobs.fake_jobs import ScriptedJob, polls
from tests.support.fake_server import FakeCoCalc

SETUP = (
    "from cocalc_magics.api import Connection\n"
    "from cocalc_magics.jobs import list_jobs, run_job, show_job\n"
    "conn = Connection()"
)


class RecordingClient(NotebookClient):
    """Records each IOPub message with its arrival time, and cell start and end."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.messages: list[tuple[float, dict]] = []
        self.cell_times: dict[int, tuple[float, float]] = {}

    def process_message(self, msg, cell, cell_index):
        self.messages.append((time.time(), msg))
        return super().process_message(msg, cell, cell_index)

    def run_cell(self, index: int) -> None:
        started = time.time()
        self.execute_cell(self.nb.cells[index], index)
        self.cell_times[index] = (started, time.time())


def kernel_environment(monkeypatch, tmp_path, url, key, project_id):
    monkeypatch.setenv("COCALC_HOST", url)
    monkeypatch.setenv("COCALC_API_KEY", key)
    monkeypatch.setenv("COCALC_PROJECT_ID", project_id)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def notebook(*sources: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source) for source in sources]
    )


def text_of(output) -> str:
    data = output.get("data", {})
    return data.get("text/plain", "") if data else output.get("text", "")


@pytest.fixture
def fake():
    with FakeCoCalc() as server:
        yield server


def test_background_display_updates_during_other_cell(
    fake, monkeypatch, tmp_path, data_dir
):
    timeline = [
        (0.0, {}),
        (0.1, {"stdout": "1\n"}),
        (1.3, {"stdout": "1\n2\n"}),
        (2.5, {"stdout": "1\n2\n3\n"}),
        (3.6, {"status": "completed", "stdout": "1\n2\n3\n"}),
    ]
    scripted = ScriptedJob(timeline).install(fake)
    kernel_environment(monkeypatch, tmp_path, fake.url, fake.api_key, fake.project_id)
    nb = notebook(
        SETUP,
        'job = run_job(conn, "for i in 1 2 3; do echo $i; sleep 1.2; done", '
        "background=True)",
        "import time\ntime.sleep(6)",
        "print(job.status, repr(job.stdout))",
    )
    client = RecordingClient(nb, timeout=60, kernel_name="python3")
    with client.setup_kernel():
        for index in range(len(nb.cells)):
            client.run_cell(index)

    sleep_start, sleep_end = client.cell_times[2]
    inside = [r for r in polls(fake) if sleep_start <= r.arrived <= sleep_end]
    assert len(inside) >= 2
    # Polling stops with the reply that reported the end.
    assert all(r.arrived_monotonic <= scripted.ended_at for r in polls(fake))

    display_output = nb.cells[1].outputs[0]
    shown = [
        msg
        for _, msg in client.messages
        if msg["msg_type"] == "display_data"
        and msg["content"]["data"]["text/plain"].startswith("CoCalc job job-1")
    ]
    assert len(shown) == 1
    display_id = shown[0]["content"]["transient"]["display_id"]
    updates = [
        (arrived, msg)
        for arrived, msg in client.messages
        if msg["msg_type"] == "update_display_data"
    ]
    texts = [msg["content"]["data"]["text/plain"] for _, msg in updates]
    running = {
        text for text in texts if ": running" in text and "--- stdout ---" in text
    }
    assert len(running) >= 2
    assert any(sleep_start <= arrived <= sleep_end for arrived, _ in updates)
    assert ": completed, exit 0" in texts[-1]
    assert all(
        msg["content"]["transient"]["display_id"] == display_id for _, msg in updates
    )

    final_text = text_of(display_output)
    assert final_text.startswith("CoCalc job job-1…: completed, exit 0")
    assert final_text.endswith("--- stdout ---\n1\n2\n3")
    assert "&lt;" not in final_text
    assert "text/html" in display_output["data"]
    assert "completed '1\\n2\\n3\\n'" in text_of(nb.cells[3].outputs[0])
    assert fake.api_key not in json.dumps(nb)
    nbformat.validate(nb)


def test_ledger_survives_kernel_restart(local_server, monkeypatch, tmp_path, data_dir):
    kernel_environment(
        monkeypatch,
        tmp_path,
        local_server.url,
        local_server.api_key,
        local_server.project_id,
    )
    nb = notebook(
        SETUP,
        'job = run_job(conn, "sleep 1.5; echo persisted", background=True)\n'
        "print('JOB', job.job_id)",
        SETUP,
        "print(list_jobs(conn))",
        "",
        'fg = run_job(conn, "for i in 1 2 3; do echo $i; sleep 0.4; done")',
    )
    client = NotebookClient(nb, timeout=60, kernel_name="python3")
    with client.setup_kernel():
        client.execute_cell(nb.cells[0], 0)
        client.execute_cell(nb.cells[1], 1)
        client.execute_cell(nb.cells[5], 5)
        job_id = next(
            line.split()[1]
            for output in nb.cells[1].outputs
            for line in text_of(output).splitlines()
            if line.startswith("JOB ")
        )

        run_sync(client.km.restart_kernel)(now=True)
        run_sync(client.kc.wait_for_ready)(timeout=60)

        nb.cells[4].source = (
            f"j = show_job(conn, {job_id[:8]!r}, wait=True)\n"
            "print('RESULT', j.status, repr(j.stdout))"
        )
        for index in (2, 3, 4):
            client.execute_cell(nb.cells[index], index)

    listing = "".join(text_of(output) for output in nb.cells[3].outputs)
    assert job_id[:8] in listing
    assert "sleep 1.5; echo persisted" in listing
    result = "".join(text_of(output) for output in nb.cells[4].outputs)
    assert "RESULT completed 'persisted\\n'" in result

    # A foreground job: one status display, updated to the end, and one stream.
    status, *streams = nb.cells[5].outputs
    assert status["output_type"] == "display_data"
    assert ": completed, exit 0" in text_of(status)
    assert [output["name"] for output in streams] == ["stdout"]
    assert streams[0]["text"] == "1\n2\n3\n"
