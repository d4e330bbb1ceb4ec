"""Retries happen only for idempotent calls, only after 503s or connection failures."""

from __future__ import annotations

import pytest

from cocalc_magics.api import (
    BridgeTimeoutError,
    Connection,
    ConnectionFailedError,
    HTTPStatusError,
    NotListeningError,
    PermissionDeniedError,
)
from tests.support.fake_server import PROJECT_ID, Reply

NOT_LISTENING = Reply.error(
    f"request -- no subscribers matching 'project.{PROJECT_ID}.0.api.-' - callHub: "
    f"subject='project.{PROJECT_ID}.0.api.-', name='system.ping', code='503' "
)
TIMEOUT = Reply.error(
    "timeout - callHub: subject='hub.account.a.api', name='projects.start', code='408' "
)
PONG = {"now": 1767259800123}


def test_ping_retried_after_not_listening(fake, connection):
    fake.script("system.ping", NOT_LISTENING, NOT_LISTENING, PONG)
    result = connection.ping()
    assert result.now_ms == PONG["now"]
    assert len(fake.requests_for("system.ping")) == 3


def test_ping_gives_up_after_max_retries(fake, connection):
    fake.script("system.ping", NOT_LISTENING)
    with pytest.raises(NotListeningError):
        connection.ping()
    assert len(fake.requests) == 1 + connection.max_retries


def test_retry_back_off_doubles(fake):
    fake.script("system.ping", NOT_LISTENING, NOT_LISTENING, PONG)
    with Connection(
        host=fake.url, api_key=fake.api_key, project_id=PROJECT_ID, retry_backoff=0.1
    ) as conn:
        conn.ping()
    times = [r.arrived_monotonic for r in fake.requests]
    assert times[1] - times[0] >= 0.1
    assert times[2] - times[1] >= 0.2


def test_http_503_retried_for_reads(fake, connection):
    fake.script(
        "projects.state",
        Reply.html(503, "<h1>Service Unavailable</h1>"),
        {"state": "running"},
    )
    assert connection.project_state().running
    assert len(fake.requests) == 2


def test_retry_after_header_is_honoured(fake, connection):
    busy = Reply.html(503, "<h1>busy</h1>", headers={"Retry-After": "0.3"})
    fake.script("projects.state", busy, {"state": "running"})
    connection.project_state()
    gap = fake.requests[1].arrived_monotonic - fake.requests[0].arrived_monotonic
    assert gap >= 0.3


def test_dropped_connection_retried_for_reads(fake, connection):
    fake.script("system.listing", Reply.dropped(), [{"name": "a"}])
    assert [entry.name for entry in connection.listing()] == ["a"]
    assert len(fake.requests) == 2


@pytest.mark.parametrize(
    "failure", [NOT_LISTENING, Reply.html(503, "<h1>down</h1>"), Reply.dropped()]
)
def test_exec_start_never_retried(fake, connection, failure):
    fake.script(
        "system.exec", failure, {"type": "blocking", "stdout": "", "exit_code": 0}
    )
    with pytest.raises((NotListeningError, HTTPStatusError, ConnectionFailedError)):
        connection.exec("date")
    assert len(fake.requests) == 1


@pytest.mark.parametrize("failure", [NOT_LISTENING, Reply.dropped()])
def test_async_start_never_retried(fake, connection, failure):
    fake.script(
        "system.exec", failure, {"type": "async", "job_id": "j", "status": "running"}
    )
    with pytest.raises((NotListeningError, ConnectionFailedError)):
        connection.exec_async("sleep 100")
    assert len(fake.requests) == 1


def test_async_poll_retried(fake, connection):
    fake.script(
        "system.exec",
        NOT_LISTENING,
        {"type": "async", "job_id": "j", "status": "running"},
    )
    assert connection.async_get("j").running
    assert len(fake.requests) == 2


def test_permission_errors_not_retried(fake, connection):
    fake.script(
        "system.ping", Reply.error("user must be a collaborator on the project")
    )
    with pytest.raises(PermissionDeniedError):
        connection.ping()
    assert len(fake.requests) == 1


def test_no_retries_when_disabled(fake):
    fake.script("system.ping", NOT_LISTENING)
    with (
        Connection(
            host=fake.url, api_key=fake.api_key, project_id=PROJECT_ID, max_retries=0
        ) as conn,
        pytest.raises(NotListeningError),
    ):
        conn.ping()
    assert len(fake.requests) == 1


def test_start_project_polls_state_after_408(fake, connection):
    connection.state_poll_interval = 0.05
    fake.script("projects.start", TIMEOUT)
    fake.script(
        "projects.state",
        {"state": "starting"},
        {"state": "starting"},
        {"state": "running", "time": "2026-07-01T09:30:00.000Z"},
    )
    connection.start_project(timeout=5)
    names = [r.name for r in fake.requests]
    assert names == [
        "projects.start",
        "projects.state",
        "projects.state",
        "projects.state",
    ]
    assert fake.requests[0].timeout == 5000


def test_start_project_gives_up_at_its_timeout(fake, connection):
    connection.state_poll_interval = 0.1
    fake.script("projects.start", TIMEOUT)
    fake.script("projects.state", {"state": "starting"})
    with pytest.raises(BridgeTimeoutError) as caught:
        connection.start_project(timeout=0.5)
    assert "was not running after 0.5 s (last state: starting)" in caught.value.message
    assert caught.value.project_id == PROJECT_ID
    polls = fake.requests_for("projects.state")
    assert 2 <= len(polls) <= 8
    assert fake.requests_for("projects.start").__len__() == 1


def test_start_project_long_poll_is_capped(fake, connection):
    fake.script("projects.start", Reply.json(None))
    connection.start_project(timeout=600)
    assert fake.requests[0].timeout == 60000
