"""Stopped projects: dry runs, automatic starts, and cancelling during a start.

This module's server keeps each starting project in state "starting" for one
second, so the status grid can be seen passing through it.
"""

from __future__ import annotations

import _thread
import threading
import time
import uuid

import pytest

from cocalc_magics.fanout import (
    FanoutInterrupted,
    FanoutPlan,
    exec_many,
    start_many,
    stop_many,
)
from tests.support.local_server import start_server

START_DELAY_S = 1.0


@pytest.fixture(scope="module")
def module_server(tmp_path_factory):
    server = start_server(
        tmp_path_factory.mktemp("slow-start"), start_delay=START_DELAY_S
    )
    try:
        yield server
    finally:
        server.process.stop()


@pytest.fixture
def course(connection) -> list[str]:
    """Six new, stopped projects, the first two of them started."""
    ids = [
        connection.create_project(f"Course {uuid.uuid4().hex[:6]}") for _ in range(6)
    ]
    assert start_many(connection, ids[:2], display="none").ok
    return ids


class RecordingView:
    """A status view that keeps every status each project went through."""

    def __init__(self) -> None:
        self.statuses: dict[str, list[str]] = {}
        self.final = None
        self.notice = None

    def update(self, rows, elapsed_s) -> None:
        for row in rows:
            seen = self.statuses.setdefault(row.project_id, [])
            if not seen or seen[-1] != row.status:
                seen.append(row.status)

    def finish(self, result, notice=None) -> None:
        self.final = result
        self.notice = notice


def test_dry_run_counts_without_starting(connection, course):
    plan = exec_many(connection, course, "echo hi", dry_run=True)

    assert isinstance(plan, FanoutPlan)
    assert plan.summary().startswith(
        "Dry run of exec 'echo hi': 6 projects would be touched; 4 of them would "
        "have to be started."
    )
    assert [target.project_id for target in plan.to_start] == course[2:]
    assert [connection.project_state(p).state for p in course] == ["running"] * 2 + [
        "opened"
    ] * 4


def test_dry_run_reports_unreadable_projects(connection, course):
    stranger = str(uuid.uuid4())

    plan = start_many(connection, [*course, stranger], dry_run=True)

    assert list(plan.errors) == [stranger]
    assert "collaborator" in plan.errors[stranger]
    assert "The state of 1 could not be read" in plan.summary()
    assert len(plan.to_start) == 4


def test_dry_run_without_starting_stopped(connection, course):
    plan = exec_many(connection, course, "true", start_stopped=False, dry_run=True)

    assert "4 of them are not running and would fail" in plan.summary()
    assert plan.to_start == []


def test_stopped_projects_pass_through_starting(connection, course):
    view = RecordingView()

    result = exec_many(
        connection, course, "echo ready", display=view, refresh_interval=0.1
    )

    assert result.ok, result.failed()
    assert [row.started_project for row in result] == [False] * 2 + [True] * 4
    for project_id in course[2:]:
        assert "starting" in view.statuses[project_id]
    for project_id in course[:2]:
        assert "starting" not in view.statuses[project_id]
    assert [row.stdout for row in view.final] == ["ready\n"] * 6
    # The duration includes the one-second start.
    assert all(row.duration_s >= START_DELAY_S for row in result.rows[2:])


def test_not_starting_stopped_fails_their_rows(connection, course):
    result = exec_many(
        connection, course, "echo ready", start_stopped=False, display="none"
    )

    assert [row.status for row in result] == ["done"] * 2 + ["failed"] * 4
    assert all("is not running (state opened)" in row.error for row in result.rows[2:])
    assert [connection.project_state(p).state for p in course[2:]] == ["opened"] * 4


def test_interrupt_during_start_sends_no_command(connection, course, tmp_path):
    log = tmp_path / "runs.log"
    stop_many(connection, course[:2], display="none")
    view = RecordingView()
    threading.Timer(0.5, _thread.interrupt_main).start()

    with pytest.raises(FanoutInterrupted) as caught:
        exec_many(
            connection,
            course,
            f"echo $COCALC_PROJECT_ID >> {log}",
            concurrency=3,
            display=view,
        )

    result = caught.value.result
    assert [row.status for row in result] == ["cancelled"] * 6
    assert [row.error for row in result] == [
        "cancelled before the command was sent"
    ] * 3 + ["cancelled before it started"] * 3
    assert view.final is not None
    assert "no job was left running" in view.notice
    # The starts finish on the server, but the workers send no exec after them.
    time.sleep(START_DELAY_S + 0.5)
    assert not log.exists()
