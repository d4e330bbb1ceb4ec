"""Faults of the site, seen through the magics in a real IPython shell.

A loopback fake CoCalc misbehaves on purpose: HTML error pages, broken JSON, error
envelopes, delays, 408 and 503 answers, forgotten jobs, rejected keys. Each test
checks what the user sees: one short message that names the operation and says
what to do next, no raw HTML or Python traceback, and the id of any job that was
started, so that no work is lost. The client-level form of these faults is tested
in ``tests/api``; these tests add the magics on top.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest

from tests.faults.conftest import CANARY_KEY, PROJECT_ID, run_cell
from tests.support.fake_server import Reply

OTHER_PROJECT = "99999999-8888-7777-6666-555555555555"


def job_record(status: str, job_id: str = "job-41", **fields) -> dict:
    """An async exec record as CoCalc returns it."""
    return {
        "type": "async",
        "job_id": job_id,
        "status": status,
        "stdout": fields.pop("stdout", ""),
        "stderr": "",
        "exit_code": 0,
        "start": int(time.time() * 1000),
        "pid": 4242,
        **fields,
    }


def exec_handler(poll_replies: list, start_reply=None):
    """Reply to the start of a job, then to its polls from ``poll_replies``.

    The last poll reply repeats.
    """
    replies = list(poll_replies)

    def answer(request):
        options = request.args[0]
        if options.get("async_call"):
            return start_reply if start_reply is not None else job_record("running")
        return replies.pop(0) if len(replies) > 1 else replies[0]

    return answer


def assert_short_message(run, *fragments: str, hint: bool = True) -> str:
    """Assert the cell failed with one message naming ``fragments``; return it.

    ``hint`` also requires a "Hint:" line, what to do next.
    """
    assert run.error is not None, run.text
    assert type(run.error).__name__ == "CoCalcMagicError", repr(run.error)
    shown = run.stdout + run.stderr
    for fragment in fragments:
        assert fragment in shown, shown
    assert "Traceback" not in shown
    assert "<html" not in shown.lower()
    assert len(shown) < 1000, shown
    if hint:
        assert "\nHint: " in shown, shown
    return shown


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TestNoAnswer:
    def test_connection_refused(self, shell, monkeypatch):
        monkeypatch.setenv("COCALC_HOST", f"http://127.0.0.1:{free_port()}")
        monkeypatch.setenv("COCALC_API_KEY", CANARY_KEY)
        monkeypatch.setenv("COCALC_PROJECT_ID", PROJECT_ID)
        for line in ("%cocalc exec echo hi", "%cocalc ping", "%cocalc status"):
            run = run_cell(shell, line)
            shown = assert_short_message(run, "refused")
            assert "host" in shown.split("Hint:")[1]

    def test_slow_answer_still_arrives(self, shell, fake):
        fake.script("system.ping", Reply.json({"now": 1}, delay=1.0))
        run = run_cell(shell, "%cocalc ping")
        assert run.error is None, run.text

    def test_read_timeout_says_the_work_may_run(self, shell, fake, magics):
        from cocalc_magics.api import Connection

        # A margin of 1 s over the bridge timeout keeps the test short; the default
        # margin allows for a cold project start.
        magics.session.replace(
            Connection(
                host=fake.url,
                api_key=CANARY_KEY,
                project_id=PROJECT_ID,
                cold_start_margin=1.0,
            )
        )
        fake.script("system.version", Reply.json({"version": 1}, delay=5.0))
        started = time.monotonic()
        run = run_cell(shell, "%cocalc call --timeout 0.5 system.version")
        assert time.monotonic() - started < 4.5
        shown = assert_short_message(run, "system.version")
        assert "may still be running" in shown or "still" in shown


class TestBrokenAnswers:
    @pytest.mark.parametrize("status", [502, 504])
    def test_html_gateway_page(self, shell, fake, status):
        page = (
            f"<html><head><title>{status} Gateway</title></head><body><center>"
            f"<h1>{status} Gateway Time-out</h1></center><hr><center>nginx</center>"
            "</body></html>"
        )
        fake.script("system.exec", Reply.html(status, page))
        run = run_cell(shell, "%cocalc exec echo hi")
        shown = assert_short_message(run, f"HTTP {status}", "project exec")
        assert "<center>" not in shown

    def test_malformed_json(self, shell, fake):
        fake.script("system.exec", Reply(body=b'{"type": "async", "job_id": '))
        run = run_cell(shell, "%cocalc exec echo hi")
        assert_short_message(run, "not valid JSON")

    def test_truncated_json(self, shell, fake):
        record = job_record("running", stdout="x" * 2000)
        fake.script("system.exec", Reply.json(record, cut_after=120))
        run = run_cell(shell, "%cocalc exec echo hi")
        assert_short_message(run, "cut off")

    def test_error_envelope_with_status_200(self, shell, fake):
        fake.script("system.exec", Reply.error("Error: disk quota exceeded"))
        run = run_cell(shell, "%cocalc exec echo hi")
        # The server's own message is what to act on; the client adds no hint.
        shown = assert_short_message(
            run, "disk quota exceeded", "project exec", hint=False
        )
        assert "Error: disk" not in shown

    def test_error_field_in_result_is_data(self, shell, fake):
        # Only an object whose one key is "error" is an error envelope.
        fake.script("system.version", {"error": "none", "version": 7})
        run = run_cell(shell, "%cocalc call system.version")
        assert run.error is None, run.text
        assert shell.user_ns["_"] == {"error": "none", "version": 7}

    def test_job_output_mentioning_error(self, shell, fake):
        fake.on(
            "system.exec",
            exec_handler([job_record("completed", stdout='{"error": "x"}\n')]),
        )
        run = run_cell(shell, "%cocalc exec cat report.json")
        assert run.error is None, run.text
        assert '{"error": "x"}' in run.stdout


class TestJobsKeepTheirIds:
    def test_bridge_408_keeps_following_job(self, shell, fake):
        timeout_408 = Reply.error(
            "timeout - callHub: subject='project.x.api', code='408' "
        )
        fake.on(
            "system.exec",
            exec_handler(
                [timeout_408, timeout_408, job_record("completed", stdout="done\n")]
            ),
        )
        run = run_cell(shell, "%cocalc exec --timeout 600 long-task")
        assert run.error is None, run.text
        assert "done" in run.stdout
        result = shell.user_ns["_cocalc"]
        assert result.job_id == "job-41"

    def test_evicted_job_names_its_id(self, shell, fake):
        gone = Reply.error("Error: Async operation 'job-41' does not exist.")
        fake.on("system.exec", exec_handler([gone]))
        run = run_cell(shell, "%cocalc exec --timeout 600 long-task")
        shown = run.text
        assert "job-41" in shown
        assert "does not exist" in shown or "lost" in shown
        assert "Traceback" not in shown

    def test_evicted_job_hint_fits_the_fault(self, shell, fake):
        gone = Reply.error("Error: Async operation 'job-41' does not exist.")
        fake.on("system.exec", exec_handler([gone]))
        run = run_cell(shell, "%cocalc exec --timeout 600 long-task")
        hint = run.text.split("Hint:")[-1]
        assert "--no-raise" not in hint
        assert "does not exist" in run.text

    def test_interrupt_during_failures_names_job(self, shell, fake):
        # Polls fail with 502 pages; the user gives up with Ctrl-C and --detach.
        bad_gateway = Reply.html(502, "<html><body>502 Bad Gateway</body></html>")
        fake.on("system.exec", exec_handler([bad_gateway]))
        interrupt_after(2.5)
        run = run_cell(shell, "%cocalc exec --detach --timeout 600 long-task")
        assert "Detached: job job-41 keeps running" in run.text
        assert "job-41" in str(run.error)


def interrupt_after(seconds: float) -> None:
    """Send this process SIGINT after ``seconds``, as Ctrl-C in a terminal does.

    The signal also interrupts a blocking socket read of the main thread.
    """

    def press() -> None:
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(seconds, press)
    timer.daemon = True
    timer.start()


class TestProjectStates:
    def test_not_listening_while_starting(self, shell, fake):
        not_listening = Reply.error(
            "Error: timeout - callHub: subject='project.x', code='503' (not listening)"
        )
        fake.script("system.ping", not_listening, not_listening, {"now": 1})
        fake.script("projects.state", {"state": "starting"}, {"state": "running"})
        fake.script("projects.start", None)
        fake.on("system.exec", exec_handler([job_record("completed", stdout="ok\n")]))
        run = run_cell(shell, "%cocalc exec echo ok")
        assert run.error is None, run.text
        assert "ok" in run.stdout
        assert fake.requests_for("projects.start")

    def test_stopped_project_is_started_visibly(self, shell, fake):
        fake.script("projects.state", {"state": "opened"})
        fake.script("projects.start", None)
        fake.on("system.exec", exec_handler([job_record("completed", stdout="ok\n")]))
        run = run_cell(shell, "%cocalc exec echo ok")
        assert run.error is None, run.text
        assert "Starting project" in run.text
        assert "started in" in run.text

    def test_project_not_running_without_auto_start(self, shell, fake, magics):
        magics.start_stopped_projects = False
        fake.script("projects.state", {"state": "opened"})
        fake.script("system.exec", Reply.error("Error: project not running"))
        run = run_cell(shell, "%cocalc exec echo ok")
        assert_short_message(run, "not running", "%cocalc start")
        assert not fake.requests_for("projects.start")


class TestKeys:
    def test_missing_key_sends_nothing(self, shell, fake, monkeypatch):
        monkeypatch.delenv("COCALC_API_KEY")
        run = run_cell(shell, "%cocalc exec echo hi")
        assert run.error is not None
        assert "COCALC_API_KEY" in run.text
        assert fake.requests == []

    def test_unknown_key(self, shell, fake, monkeypatch):
        monkeypatch.setenv("COCALC_API_KEY", "sk-unknown-0000000000000000")
        run = run_cell(shell, "%cocalc ping")
        assert_short_message(run, "must sign in as project or account")

    def test_unknown_key_on_the_hub(self, shell, fake, monkeypatch):
        monkeypatch.setenv("COCALC_API_KEY", "sk-unknown-0000000000000000")
        run = run_cell(shell, "%cocalc status")
        assert_short_message(run, "must be signed in")

    def test_project_key_on_hub(self, shell, fake, monkeypatch):
        fake.project_keys[CANARY_KEY + "-project"] = PROJECT_ID
        monkeypatch.setenv("COCALC_API_KEY", CANARY_KEY + "-project")
        run = run_cell(shell, "%cocalc status")
        shown = assert_short_message(run, "must be signed in")
        assert "account" in shown

    def test_project_key_for_another_project(self, shell, fake, monkeypatch):
        fake.project_keys[CANARY_KEY + "-project"] = OTHER_PROJECT
        monkeypatch.setenv("COCALC_API_KEY", CANARY_KEY + "-project")
        run = run_cell(shell, "%cocalc ping")
        assert_short_message(run, "must match requested project")

    def test_not_a_collaborator(self, shell, fake):
        run = run_cell(shell, f"%cocalc ping --project {OTHER_PROJECT}")
        assert_short_message(run, "collaborator")


class TestRequestSize:
    def test_body_over_one_megabyte_is_not_sent(self, shell, fake):
        body = "echo " + "x" * (1024 * 1024 + 10) + "\n"
        run = run_cell(shell, "%%cocalc_exec\n" + body)
        assert run.error is not None
        assert "1048576" in run.text
        assert "x" * 200 not in run.text
        assert not fake.requests_for("system.exec")
