"""Panel widget models and their state transitions, against the real local server.

Buttons are clicked through ``Button.click()``, which runs the same handlers as a
click in the browser; the work then runs in the panel's worker thread.
"""

from __future__ import annotations

import json
import math
import threading
import time

import pytest

from cocalc_magics.api import Connection
from cocalc_magics.jobs.ledger import JobLedger, LedgerEntry, site_of
from cocalc_magics.panels import (
    JobsPanel,
    KernelsPanel,
    ProjectPanel,
    QuotasPanel,
    StatePanel,
)
from cocalc_magics.panels.base import _descendants
from cocalc_magics.panels.tracking import job_progress, output_progress
from tests.panels.lab_server import free_port
from tests.support.fake_server import PROJECT_ID
from tests.support.local_server import wait_until

PROGRESS_COMMAND = 'for i in 1 2 3 4 5 6 7 8; do echo "step $i/8"; sleep 0.4; done'


@pytest.fixture
def connection(local_server):
    with Connection(
        host=local_server.url,
        api_key=local_server.api_key,
        project_id=local_server.project_id,
        label="local server",
    ) as client:
        yield client


@pytest.fixture
def running(connection):
    connection.start_project()
    return connection


@pytest.fixture
def panels():
    """Panels made by a test, closed afterwards so no refresh thread survives it."""
    created = []
    yield created
    for panel in created:
        panel.close()


def wait_for_action(panel, timeout: float = 60.0) -> None:
    wait_until(lambda: not panel.action_running, timeout=timeout)


def widget_states(panel) -> str:
    """Every synced trait of the panel and its descendants, as one JSON text."""
    states = [panel.get_state()] + [w.get_state() for w in _descendants(panel)]
    return json.dumps(states, default=str)


# -- state panel ----------------------------------------------------------------------


def test_state_panel_stop_and_start(connection, panels):
    connection.start_project()
    panel = StatePanel(connection, refresh_interval=None)
    panels.append(panel)

    assert "data-state='running'" in panel.state_badge.value
    assert panel.start_button.disabled
    assert not panel.stop_button.disabled
    assert not panel.restart_button.disabled

    panel.stop_button.click()
    assert panel.stop_button.disabled  # while the stop runs
    wait_for_action(panel)
    assert connection.project_state().state == "opened"
    panel.refresh()
    assert "data-state='opened'" in panel.state_badge.value
    assert ">stopped<" in panel.state_badge.value
    assert panel._progress.bar_style == "success"
    assert panel._progress_label.value.startswith("Stopping: done after")
    assert not panel.start_button.disabled
    assert panel.stop_button.disabled

    panel.start_button.click()
    wait_for_action(panel)
    assert connection.project_state().state == "running"
    panel.refresh()
    assert "data-state='running'" in panel.state_badge.value
    assert panel.state_since.value.startswith("since ")


def test_state_panel_restart(running, panels):
    before = running.project_state().time
    panel = StatePanel(running, refresh_interval=None)
    panels.append(panel)

    panel.restart_button.click()
    wait_for_action(panel)

    state = running.project_state()
    assert state.state == "running"
    assert state.time != before
    assert "restarted" in panel._action_message.value


def test_state_panel_action_error_shown(local_server, panels):
    other = "00000000-0000-4000-8000-000000000000"
    with Connection(
        host=local_server.url, api_key=local_server.api_key, project_id=other
    ) as client:
        panel = StatePanel(client, refresh_interval=None)
        panels.append(panel)
        assert "Refresh failed" in panel._message.value
        panel.stop()
        wait_for_action(panel)

    assert "Stopping failed" in panel._action_message.value
    assert "must be collaborator" in panel.last_action_error
    assert "Traceback" not in panel._action_message.value
    assert panel._progress.bar_style == "danger"


def test_refresh_never_starts_stopped_project(connection, panels):
    connection.stop_project()
    panel = ProjectPanel(connection, refresh_interval=0.2, ledger=None, jobs=["gone-job"])
    panels.append(panel)

    time.sleep(1.0)
    assert connection.project_state().state == "opened"
    assert "stopped" in panel.kernels_panel.empty_label.value
    assert panel.jobs_panel.jobs[0].status == "lost"


# -- quotas panel ----------------------------------------------------------------------


def test_quotas_panel_bars(running, panels):
    panel = QuotasPanel(running, refresh_interval=None)
    panels.append(panel)
    running.exec("head -c 2000000 /dev/urandom > quota-test.bin")
    panel.refresh()
    panel.refresh()  # the CPU rate needs two snapshots

    uses = {use.name: use for use in panel.uses}
    assert set(uses) == {"memory", "cpu", "disk", "idle_timeout", "network"}
    assert uses["disk"].used >= 2.0
    assert uses["disk"].limit == 3000
    assert math.isclose(panel.bars["disk"].value, uses["disk"].used / 3000)
    assert panel.bars["disk"].bar_style == "success"
    assert panel.bar_labels["disk"].value.endswith("of 3000 MB")
    assert panel.bar_labels["cpu"].value.endswith("of 1 cores")
    assert uses["cpu"].used is not None
    assert panel.bar_labels["idle_timeout"].value.startswith("idle ")
    assert panel.network_label.value == "no outside access"
    running.exec("rm -f quota-test.bin")


# -- jobs panel ------------------------------------------------------------------------


def test_jobs_panel_progress_until_completed(running, panels):
    job = running.exec_async(PROGRESS_COMMAND)
    panel = JobsPanel(running, refresh_interval=0.2, jobs=[job], ledger=None)
    panels.append(panel)

    seen = set()

    def finished() -> bool:
        tracked = panel.jobs[0]
        progress = job_progress(tracked)
        if tracked.running and progress is not None:
            seen.add(progress)
        return not tracked.running

    wait_until(finished, timeout=20)
    assert len(seen) >= 2, seen
    assert min(seen) < 0.5
    row = panel._rows[job.job_id]
    wait_until(lambda: "data-status='completed'" in row.status.value, timeout=5)
    assert "completed (0)" in row.status.value
    assert row.progress.value == 1.0
    assert row.progress.bar_style == "success"
    assert row.kill.disabled
    assert f"{job.job_id}  completed, exit 0" in panel.summary_text()
    assert "last output: step 8/8" in panel.summary_text()


def test_jobs_panel_kill(running, panels, isolated_ledger):
    job = running.exec_async("sleep 60", timeout=120)
    ledger = JobLedger()
    now = int(time.time() * 1000)
    ledger.add(
        LedgerEntry(
            site=site_of(running.host),
            project_id=running.project_id,
            job_id=job.job_id,
            status="running",
            created_ms=now,
            updated_ms=now,
            pid=job.pid,
            command="sleep 60",
            start_ms=job.start_ms,
        )
    )
    panel = JobsPanel(running, refresh_interval=0.5, ledger=ledger)
    panels.append(panel)
    wait_until(lambda: job.job_id in panel._rows, timeout=10)
    row = panel._rows[job.job_id]
    assert not row.kill.disabled

    row.kill.click()
    wait_for_action(panel, timeout=20)

    tracked = panel.jobs[0]
    assert tracked.status == "killed"
    assert tracked.signals_sent[0] == "SIGINT"
    assert not running.async_get(job.job_id).running
    assert ledger.get(site_of(running.host), running.project_id, job.job_id).signals
    wait_until(lambda: "data-status='killed'" in row.status.value, timeout=5)


def test_jobs_panel_lists_ledger_jobs(running, panels):
    ledger = JobLedger()
    now = int(time.time() * 1000)
    site = site_of(running.host)
    for number, project in enumerate([running.project_id, "other-project"]):
        ledger.add(
            LedgerEntry(
                site=site,
                project_id=project,
                job_id=f"finished-{number}",
                status="completed",
                created_ms=now,
                updated_ms=now,
                command=f"echo {number}",
                exit_code=0,
                elapsed_s=1.5,
                final=True,
            )
        )
    panel = JobsPanel(running, refresh_interval=None, ledger=ledger)
    panels.append(panel)

    assert [job.job_id for job in panel.jobs] == ["finished-0"]
    assert panel.jobs[0].status == "completed"
    assert "completed, exit 0 (1.5 s): echo 0" in panel.summary_text()


def test_jobs_panel_unknown_job_is_lost(running, panels):
    panel = JobsPanel(running, refresh_interval=None, jobs=["no-such-job"], ledger=None)
    panels.append(panel)

    job = panel.jobs[0]
    assert job.status == "lost"
    assert "no longer has this job" in job.message
    assert "data-status='lost'" in panel._rows["no-such-job"].status.value


def test_jobs_panel_rejects_bad_job(running, panels):
    panel = JobsPanel(running, refresh_interval=None, ledger=None)
    panels.append(panel)
    with pytest.raises(TypeError, match="job id"):
        panel.track(42)
    with pytest.raises(TypeError, match="job id"):
        panel.track("  ")


# -- kernels panel ---------------------------------------------------------------------


def test_kernels_panel_stop_button(running, panels):
    outcome = {}

    def run_long_cell() -> None:
        try:
            outcome["result"] = running.jupyter_execute("import time; time.sleep(15)")
        except Exception as error:  # noqa: BLE001 - the stop may fail the call
            outcome["error"] = error

    worker = threading.Thread(target=run_long_cell, daemon=True)
    worker.start()
    panel = KernelsPanel(running, refresh_interval=0.3)
    panels.append(panel)
    wait_until(lambda: panel.kernels, timeout=30)
    pid = panel.kernels[0].pid
    assert "1 running" in panel.empty_label.value

    panel._stop_buttons[pid].click()
    wait_for_action(panel, timeout=20)
    assert f"Stopped the kernel with pid {pid}" in panel._action_message.value
    wait_until(lambda: not panel.kernels, timeout=10)


# -- errors, secrets and static views --------------------------------------------------


def test_wrong_key_error_in_panel(local_server, panels):
    canary = "sk-CANARY-panel-0000000000"
    with Connection(
        host=local_server.url, api_key=canary, project_id=local_server.project_id
    ) as client:
        panel = ProjectPanel(client, refresh_interval=None, ledger=None)
        panels.append(panel)
        bundle = panel._repr_mimebundle_()

    assert "Refresh failed" in panel._message.value
    assert "Traceback" not in panel._message.value
    assert panel.last_error in bundle["text/plain"]
    assert canary not in widget_states(panel)
    assert canary not in json.dumps(bundle)
    assert canary not in repr(panel)


def test_unreachable_server_error_in_panel(panels):
    url = f"http://127.0.0.1:{free_port()}"
    with Connection(host=url, api_key="sk-x", project_id=PROJECT_ID) as client:
        client.max_retries = 0
        panel = QuotasPanel(client, refresh_interval=None)
        panels.append(panel)
    assert "Refresh failed" in panel._message.value


def test_key_never_in_widget_state(running, local_server, panels):
    job = running.exec_async("echo done")
    panel = ProjectPanel(running, refresh_interval=None, jobs=[job], ledger=None)
    panels.append(panel)
    panel.refresh()
    bundle = panel._repr_mimebundle_()

    assert local_server.api_key not in widget_states(panel)
    assert local_server.api_key not in json.dumps(bundle)


def test_mimebundle_has_text_and_html(running, local_server, panels):
    local_server.hub(
        "db.userQuery",
        {"query": {"projects": {"project_id": running.project_id, "title": "<b>lab</b>"}}},
    )
    panel = ProjectPanel(running, refresh_interval=None, ledger=None)
    panels.append(panel)
    bundle = panel._repr_mimebundle_()

    assert set(bundle) >= {
        "text/plain",
        "text/html",
        "application/vnd.jupyter.widget-view+json",
    }
    text = bundle["text/plain"]
    assert text.startswith(f"CoCalc project: project {running.project_id}")
    assert "state    running" in text
    assert "Memory" in text
    assert "Box(" not in text
    assert "&lt;b&gt;lab&lt;/b&gt;" in bundle["text/html"]
    assert "<b>lab</b>" not in bundle["text/html"]
    local_server.hub(
        "db.userQuery",
        {"query": {"projects": {"project_id": running.project_id, "title": "Local project"}}},
    )


# -- refreshing and closing ------------------------------------------------------------


def test_close_stops_refreshing(running):
    panel = ProjectPanel(running, refresh_interval=0.1, ledger=None)
    assert panel.wait_for_refresh()
    assert panel.refreshing

    panel.close()

    assert not panel.refreshing
    assert not panel._refresh_thread.is_alive()
    assert panel.comm is None
    assert all(part.comm is None for part in panel.parts)
    assert not panel.refresh()


def test_refresh_interval_checked(running):
    for bad in (-1, 0.01, float("nan")):
        with pytest.raises(ValueError, match="refresh_interval"):
            StatePanel(running, refresh_interval=bad)
    with pytest.raises(TypeError, match="refresh_interval"):
        StatePanel(running, refresh_interval="5")


def test_panel_needs_a_project(local_server):
    with Connection(host=local_server.url, api_key=local_server.api_key) as client:
        with pytest.raises(ValueError, match="no project to show"):
            StatePanel(client)


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("", None),
        ("no figures here", None),
        ("10%\n20%\n", 0.2),
        ("step 3/4", 0.75),
        (" 45%|████▌     | 45/100 [00:01<00:01]\r 50%|█████     | 50/100", 0.5),
        ("ratio 2/0 then 120%", None),
        ("2026/07/01 12.5 %", 0.125),
    ],
)
def test_output_progress(output, expected):
    assert output_progress(output) == expected


def test_frontend_comm_close_stops_refreshing(running):
    panel = StatePanel(running, refresh_interval=0.1)
    assert panel.wait_for_refresh()
    assert panel.refreshing

    # What the kernel does when the frontend sends comm_close for the panel.
    panel.comm.handle_close({"content": {"data": {}}})

    wait_until(lambda: not panel._refresh_thread.is_alive(), timeout=5)
    assert not panel.refreshing
    panel.close()
