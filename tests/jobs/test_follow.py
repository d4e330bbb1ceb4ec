"""Polling a job: streamed output, request rate, fallbacks, lost jobs.

These run against the loopback fake server, whose job follows an exact timeline.
"""

from __future__ import annotations

import pytest

from cocalc_magics.api import Connection
from cocalc_magics.jobs import Job, PollPolicy, follow, run_job
from tests.jobs.fake_jobs import ScriptedJob, polls
from tests.support.fake_server import FakeCoCalc, Reply

COUNTING = [
    (0.0, {"stdout": ""}),
    (0.4, {"stdout": "1\n"}),
    (0.9, {"stdout": "1\n2\n", "stderr": "warn\n"}),
    (1.4, {"status": "completed", "stdout": "1\n2\n3\n", "stderr": "warn\n"}),
]


@pytest.fixture
def fake():
    with FakeCoCalc() as server:
        yield server


@pytest.fixture
def client(fake):
    with Connection(
        host=fake.url, api_key=fake.api_key, project_id=fake.project_id
    ) as c:
        yield c


def test_output_streams_in_order_once(fake, client, ledger, capsys):
    ScriptedJob(COUNTING).install(fake)
    job = run_job(client, "count", ledger=ledger)

    captured = capsys.readouterr()
    assert captured.out.startswith("1\n2\n3\n")
    assert captured.out.count("1\n") == 1
    assert captured.err.count("warn\n") == 1
    assert job.status == "completed"
    assert job.stdout == "1\n2\n3\n"


def test_updates_show_growing_output(fake, client, ledger):
    timeline = [
        (0.0, {}),
        (0.3, {"stdout": "1\n"}),
        (1.5, {"stdout": "1\n2\n"}),
        (2.7, {"status": "completed", "stdout": "1\n2\n3\n"}),
    ]
    ScriptedJob(timeline).install(fake)
    job = Job.start(client, "count", ledger=ledger)
    seen = []
    follow(job, on_update=lambda j: seen.append((j.status, j.stdout)))

    assert seen[-1] == ("completed", "1\n2\n3\n")
    while_running = {stdout for status, stdout in seen if status == "running"}
    assert while_running >= {"1\n", "1\n2\n"}


def test_poll_rate_bounded(fake, client, ledger):
    timeline = [(0.0, {}), (5.0, {"status": "completed", "stdout": "done\n"})]
    ScriptedJob(timeline).install(fake)
    job = Job.start(client, "quiet", ledger=ledger)
    follow(job)

    requests = polls(fake)
    span = requests[-1].arrived_monotonic - requests[0].arrived_monotonic
    # Each cycle is one long-poll plus one poll after the 408: 2 per second at most.
    assert len(requests) <= 2 * span + 2
    assert job.stdout == "done\n"


def test_rate_bounded_when_server_ignores_await(fake, client, ledger):
    timeline = [(0.0, {}), (3.0, {"status": "completed"})]
    ScriptedJob(timeline, honour_await=False).install(fake)
    job = Job.start(client, "quiet", ledger=ledger)
    follow(job)

    requests = polls(fake)
    span = requests[-1].arrived_monotonic - requests[0].arrived_monotonic
    assert len(requests) <= span / 1.0 + 2
    assert job.status == "completed"


def test_no_poll_after_end(fake, client, ledger):
    scripted = ScriptedJob(COUNTING).install(fake)
    job = Job.start(client, "count", ledger=ledger)
    follow(job)

    last = polls(fake)[-1]
    assert last.args[0]["async_await"] is True
    assert last.arrived_monotonic <= scripted.ended_at
    assert job.status == "completed"


def test_long_poll_bridge_timeout_in_ms(fake, client, ledger):
    ScriptedJob(COUNTING).install(fake)
    job = Job.start(client, "count", ledger=ledger)
    follow(job, policy=PollPolicy(min_interval_s=1.0, max_interval_s=2.0))

    waits = [r for r in polls(fake) if r.args[0].get("async_await")]
    assert waits
    assert all(1000 <= r.timeout <= 2000 for r in waits)
    assert all(r.args[0].get("async_stats") is True for r in waits)


def test_transient_errors_retried(fake, client, ledger):
    scripted = ScriptedJob(
        [(0.0, {}), (0.5, {"status": "completed", "stdout": "ok\n"})]
    )
    answers = [Reply.html(502, "<html>Bad Gateway</html>")]

    def answer(request):
        options = request.args[0]
        if "async_get" in options and answers:
            return answers.pop()
        return scripted.answer(request)

    fake.on("system.exec", answer)
    job = Job.start(client, "flaky", ledger=ledger)
    follow(job)
    assert job.status == "completed"
    assert job.stdout == "ok\n"


def test_forgotten_job_is_lost(fake, client, ledger):
    scripted = ScriptedJob(
        [(0.0, {"stdout": "so far\n"}), (60.0, {"status": "completed"})]
    )
    scripted.install(fake)
    job = Job.start(client, "long", ledger=ledger)
    job.refresh()
    scripted.forgotten = True
    follow(job)

    assert job.status == "lost"
    assert job.stdout == "so far\n"
    stored = ledger.get(job.site, job.project_id, job.job_id)
    assert stored.status == "lost"
    assert stored.stdout == "so far\n"
    assert stored.command == "long"
    assert "lost" in repr(job)


def test_follow_timeout_leaves_job_running(fake, client, ledger):
    ScriptedJob([(0.0, {}), (60.0, {"status": "completed"})]).install(fake)
    job = Job.start(client, "long", ledger=ledger)
    with pytest.raises(TimeoutError, match=job.job_id):
        follow(job, timeout=0.5)
    assert job.running


def test_signal_death_reads_as_killed(fake, client, ledger):
    scripted = ScriptedJob([(0.0, {}), (60.0, {"status": "completed"})]).install(fake)
    job = Job.start(client, "long", ledger=ledger)
    job.note_signal("SIGTERM")
    scripted.timeline = [(0.0, {"status": "completed", "stdout": "x"})]
    job.refresh()

    assert job.status == "killed"
    assert job.exit_code is None
    assert job.stopped_by == "SIGTERM"
    assert ledger.get(job.site, job.project_id, job.job_id).signals == ["SIGTERM"]
