"""A stopped project on a slow-starting local server, driven from the magics.

The server keeps a starting project in state "starting" for two seconds, and its
project endpoint answers 503 "not listening" meanwhile, as CoCalc does while a
project boots. The magics must start the project visibly, wait, and then run the
command once.
"""

from __future__ import annotations

import pytest

from tests.faults.conftest import register_server, run_cell
from tests.support.local_server import start_server

START_DELAY_S = 2.0


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    server = register_server(
        start_server(tmp_path_factory.mktemp("slow-start"), start_delay=START_DELAY_S)
    )
    try:
        yield server
    finally:
        server.process.stop()


@pytest.fixture
def stopped(shell, magics, slow_server):
    from cocalc_magics.api import Connection

    connection = Connection(
        host=slow_server.url,
        api_key=slow_server.api_key,
        project_id=slow_server.project_id,
    )
    connection.stop_project()
    magics.session.replace(connection)
    return slow_server


def test_stopped_project_started_then_command_runs(shell, stopped):
    run = run_cell(shell, "%cocalc exec echo ran-once")
    assert run.error is None, run.text
    assert "Starting project" in run.text
    assert "started in" in run.text
    assert run.stdout.count("ran-once") == 1


def test_stopped_project_without_auto_start(shell, magics, stopped):
    magics.start_stopped_projects = False
    run = run_cell(shell, "%cocalc exec echo never")
    assert run.error is not None
    assert "never" not in run.stdout.replace("echo never", "")
    assert "%cocalc start" in run.text
