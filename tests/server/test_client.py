"""The project's own client, ``cocalc_magics.api``, against the local server."""

from __future__ import annotations

import time

import pytest

api = pytest.importorskip("cocalc_magics.api")


@pytest.fixture(scope="module")
def connection(local_server):
    with api.Connection(
        host=local_server.url,
        api_key=local_server.api_key,
        project_id=local_server.project_id,
    ) as connection:
        yield connection


def test_ping_and_scope(connection, local_server):
    assert connection.ping().project_id == local_server.project_id
    scope = connection.hub_test()
    assert scope.kind == "account"
    assert scope.account_id == local_server.account_id


def test_exec_results(connection):
    result = connection.exec("echo out; echo err >&2; exit 5")
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    assert result.exit_code == 5
    assert not result.ok


def test_exec_timeout_error(connection):
    with pytest.raises(api.ExecTimeoutError):
        connection.exec("sleep 10", timeout=0.3)


def test_async_job_and_signal(connection):
    job = connection.exec_async("sleep 30")
    assert job.running
    connection.signal(job.pid, 9)
    final = connection.async_get(job.job_id, wait=True, wait_timeout=10)
    assert final.status == "completed"
    assert final.exit_code == 0


def test_async_wait_timeout_returns_poll(connection):
    job = connection.exec_async("sleep 2")
    started = time.monotonic()
    polled = connection.async_get(job.job_id, wait=True, wait_timeout=0.5)
    assert time.monotonic() - started < 2
    assert polled.running
    assert (
        connection.async_get(job.job_id, wait=True, wait_timeout=10).status
        == "completed"
    )


def test_missing_job(connection):
    with pytest.raises(api.JobNotFoundError):
        connection.async_get("missing-job")


def test_files(connection):
    connection.write_text_file("client/notes.txt", "hello")
    assert connection.read_text_file("client/notes.txt") == "hello"
    names = [entry.name for entry in connection.listing("client")]
    assert names == ["notes.txt"]


def test_hub_helpers(connection, local_server):
    project_id = connection.create_project("client project")
    connection.start_project(project_id)
    assert connection.project_state(project_id).state == "running"
    quotas = connection.project_quotas(project_id)
    assert quotas.settings["memory"] == 1000
    connection.set_quotas(project_id, mintime=900)
    assert connection.project_quotas(project_id).settings["mintime"] == 900
    assert "client project" in [info.title for info in connection.projects()]
    connection.stop_project(project_id)
    assert connection.project_state(project_id).state == "opened"


def test_permission_errors(local_server):
    with (
        api.Connection(
            host=local_server.url, api_key="sk-" + "B" * 16 + "000009"
        ) as bad,
        pytest.raises(api.AuthenticationError),
    ):
        bad.hub_ping()
