"""Back-off and rate limiting against a site that returns 503 or cannot be reached.

A loopback proxy stands between the client and a real local server and injects the
faults: a load balancer's HTTP 503, the bridge's hub and project ``code='503'``
envelopes, and a refused connection while it stops listening. The commands log
each run to a file, so the tests can check that no command ran twice.
"""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from cocalc_magics.api import Connection
from cocalc_magics.fanout import Pacer, exec_many, start_many
from tests.fanout.faulty_proxy import Fault, FaultyProxy

HUB_503 = (
    "request -- no subscribers matching 'hub.account.A.api' - callHub: "
    "subject='hub.account.A.api', name='projects.state', code='503' "
)


def project_503(project_id: str) -> str:
    subject = f"project.{project_id}.0.api.-"
    return (
        f"request -- no subscribers matching '{subject}' - callHub: "
        f"subject='{subject}', name='system.exec', code='503' "
    )


@pytest.fixture(scope="module")
def projects(connection) -> list[str]:
    ids = [connection.create_project(f"Faults {number}") for number in range(10)]
    assert start_many(connection, ids, display="none").ok
    return ids


@pytest.fixture
def run_log(tmp_path) -> Path:
    return tmp_path / "runs.log"


def runs_per_project(log: Path) -> collections.Counter:
    return collections.Counter(log.read_text().split())


def through(proxy: FaultyProxy, module_server) -> Connection:
    return Connection(host=proxy.url, api_key=module_server.api_key, label="proxy")


def is_exec_start(seen, body) -> bool:
    return seen.name == "system.exec" and body["args"][0].get("async_call") is True


def test_http_503_pauses_every_worker(module_server, projects, run_log):
    budget = {"left": 3}

    def decide(seen, body):
        if is_exec_start(seen, body) and budget["left"] > 0:
            budget["left"] -= 1
            return Fault.http(503)
        return None

    proxy = FaultyProxy(module_server.url, decide).start()
    pacer = Pacer(None, backoff_base=0.5, backoff_max=2.0)
    try:
        result = exec_many(
            through(proxy, module_server),
            projects,
            f"echo $COCALC_PROJECT_ID >> {run_log}",
            concurrency=5,
            pacer=pacer,
            display="none",
        )
    finally:
        proxy.stop()

    assert result.ok, result.failed()
    assert runs_per_project(run_log) == {project_id: 1 for project_id in projects}
    assert pacer.busy_responses == 3
    first_fault = next(seen.at for seen in proxy.seen if seen.faulted)
    # The shared pause is at least 0.25 s. Requests already on the way may land
    # just after the fault, but none is sent inside the pause.
    quiet = [
        seen for seen in proxy.seen if first_fault + 0.05 < seen.at < first_fault + 0.25
    ]
    assert quiet == []


def test_hub_503_envelope_is_retried(module_server, projects, run_log):
    budget = {"left": 4}

    def decide(seen, body):
        if seen.name == "projects.state" and budget["left"] > 0:
            budget["left"] -= 1
            return Fault.envelope(HUB_503)
        return None

    proxy = FaultyProxy(module_server.url, decide).start()
    try:
        result = exec_many(
            through(proxy, module_server),
            projects,
            f"echo $COCALC_PROJECT_ID >> {run_log}",
            pacer=Pacer(None, backoff_base=0.2, backoff_max=1.0),
            display="none",
        )
    finally:
        proxy.stop()

    assert result.ok, result.failed()
    assert len(proxy.requests_for("projects.state")) == len(projects) + 4
    assert runs_per_project(run_log) == {project_id: 1 for project_id in projects}


def test_project_not_listening_retries_that_project(module_server, projects, run_log):
    slow = projects[3]
    budget = {"left": 2}

    def decide(seen, body):
        if is_exec_start(seen, body) and seen.project_id == slow and budget["left"] > 0:
            budget["left"] -= 1
            return Fault.envelope(project_503(slow))
        return None

    proxy = FaultyProxy(module_server.url, decide).start()
    pacer = Pacer(None, backoff_base=0.2, backoff_max=1.0)
    try:
        result = exec_many(
            through(proxy, module_server),
            projects,
            f"echo $COCALC_PROJECT_ID >> {run_log}",
            pacer=pacer,
            display="none",
        )
    finally:
        proxy.stop()

    starts = collections.Counter(
        seen.project_id for seen in proxy.requests_for("system.exec") if seen.faulted
    )
    assert result.ok, result.failed()
    assert starts == {slow: 2}
    assert runs_per_project(run_log) == {project_id: 1 for project_id in projects}


def test_unreachable_site_recovers(module_server, projects, run_log):
    proxy = FaultyProxy(module_server.url, lambda seen, body: None).start()
    pacer = Pacer(None, backoff_base=0.4, backoff_max=2.0)
    # No client retries, so that the title look-up gives up at once and the
    # workers meet the outage.
    connection = Connection(
        host=proxy.url, api_key=module_server.api_key, label="proxy", max_retries=0
    )
    # The site goes away for 1.5 s just as the fan-out begins.
    proxy.pause(1.5)
    try:
        result = exec_many(
            connection,
            projects,
            f"sleep 0.2; echo $COCALC_PROJECT_ID >> {run_log}",
            concurrency=5,
            pacer=pacer,
            display="none",
        )
    finally:
        proxy.stop()

    assert result.ok, result.failed()
    assert pacer.busy_responses >= 1
    assert runs_per_project(run_log) == {project_id: 1 for project_id in projects}


def test_rate_limit_spaces_requests(module_server, projects):
    proxy = FaultyProxy(module_server.url, lambda seen, body: None).start()
    try:
        result = exec_many(
            through(proxy, module_server),
            projects,
            "true",
            concurrency=10,
            pacer=Pacer(20.0, burst=4),
            display="none",
        )
    finally:
        proxy.stop()

    # State checks and exec starts take tokens; long-polls are exempt.
    paced = [
        seen
        for seen in proxy.seen
        if seen.name == "projects.state" or is_exec_start(seen, seen.body)
    ]
    span = max(seen.at for seen in paced) - min(seen.at for seen in paced)
    assert result.ok, result.failed()
    assert len(paced) == 2 * len(projects)
    # 4 tokens at once, then 20 per second: the other 16 need at least 0.8 s.
    assert span >= 0.75
