"""Commands as jobs through the magics: streaming, --bg, jobs, job, and unload.

The local server runs the commands as real processes; the fake server scripts
CoCalc's cumulative job records where the exact replies matter.
"""

from __future__ import annotations

import io
import itertools
import threading
import time

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from cocalc_magics.jobs import Job, active_watchers
from cocalc_magics.magics.errors import CommandFailedError
from cocalc_magics.magics.results import CommandResult
from tests.support.fake_server import Reply


class RecordingStream(io.StringIO):
    """A stdout that keeps every write separately."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def cumulative_job(outputs: list[str], job_id: str = "job-1"):
    """Reply like CoCalc: each async_get returns all stdout so far, then completes."""
    polls = iter(outputs)

    def respond(request):
        options = request.args[0]
        record = {
            "type": "async",
            "job_id": job_id,
            "start": 1_700_000_000_000,
            "stderr": "",
            "exit_code": 0,
        }
        if options.get("async_call"):
            return {**record, "status": "running", "stdout": "", "pid": 42}
        stdout = next(polls, outputs[-1])
        status = "completed" if stdout == outputs[-1] else "running"
        return {**record, "status": status, "stdout": stdout}

    return respond


class TestStreaming:
    def test_writes_only_new_output(self, shell, fake, monkeypatch):
        fake.on("system.exec", cumulative_job(["1\n", "1\n2\n", "1\n2\n3\n"]))
        stream = RecordingStream()
        monkeypatch.setattr("sys.stdout", stream)
        result = shell.run_line_magic(
            "cocalc", "exec -- for i in 1 2 3; do echo $i; done"
        )
        monkeypatch.undo()

        written = "".join(stream.writes)
        assert written.startswith("1\n2\n3\n")
        assert written.count("1\n") == 1
        assert [text for text in stream.writes if text in ("1\n", "2\n", "3\n")] == [
            "1\n",
            "2\n",
            "3\n",
        ]
        assert result.stdout == "1\n2\n3\n"

    def test_poll_rate_is_bounded(self, shell, fake):
        fake.on("system.exec", cumulative_job(["a\n"] * 6 + ["a\nb\n"]))
        with capture_output():
            shell.run_line_magic("cocalc", "exec -- long")
        polls = [
            request.arrived_monotonic
            for request in fake.requests_for("system.exec")
            if "async_get" in request.args[0]
        ]
        assert len(polls) >= 2
        gaps = [later - earlier for earlier, later in itertools.pairwise(polls)]
        assert min(gaps) >= 0.2
        assert len(polls) / (polls[-1] - polls[0] + 0.5) <= 2.5

    def test_status_line_for_long_job(self, shell, on_local_server):
        with capture_output() as captured:
            result = shell.run_line_magic(
                "cocalc", "exec -- echo first; sleep 1.6; echo second"
            )
        assert captured.stdout.startswith("first\nsecond\n")
        # Outside a kernel the status is one summary line after the output.
        assert f"CoCalc job {result.job_id[:8]}" in captured.stdout
        assert "completed, exit 0" in captured.stdout

    def test_quick_job_shows_only_output(self, shell, on_local_server):
        with capture_output() as captured:
            shell.run_line_magic("cocalc", "exec -- echo quick")
        assert captured.stdout == "quick\n"
        assert captured.outputs == []


class TestResultObject:
    def test_fields_and_methods(self, shell, on_local_server):
        with capture_output():
            result = shell.run_line_magic("cocalc", "exec --out r -- echo hi")
        assert isinstance(result, CommandResult)
        assert shell.user_ns["r"] is result
        assert result.status == "completed"
        assert result.exit_code == 0
        assert result.stdout == "hi\n"
        assert result.elapsed_s is not None
        assert isinstance(result.stats, list)
        assert result.refresh() is result
        assert result.wait() is result
        assert result.kill() is result
        assert result.status == "completed"

    def test_no_job_methods_raise(self):
        result = CommandResult("", "", 0, 0.1, None, "true")
        with pytest.raises(RuntimeError, match="did not run as an async job"):
            result.wait()


class TestBackground:
    def test_bg_returns_running_job(self, shell, on_local_server):
        started = time.monotonic()
        with capture_output() as captured:
            value = shell.run_line_magic(
                "cocalc", "exec --bg --out training -- sleep 1; echo bg-done"
            )
        assert time.monotonic() - started < 1.0
        assert value is None
        job = shell.user_ns["training"]
        assert isinstance(job, Job)
        assert shell.user_ns["_cocalc"] is job
        assert job.job_id[:8] in captured.stdout
        assert job.running

        job.wait(timeout=20)
        assert job.status == "completed"
        assert job.stdout == "bg-done\n"

    def test_unload_stops_watchers(self, shell, on_local_server):
        with capture_output():
            shell.run_line_magic("cocalc", "exec --bg -- sleep 20")
        job = shell.user_ns["_cocalc"]
        assert any(watcher.job is job for watcher in active_watchers())

        shell.run_line_magic("unload_ext", "cocalc_magics")
        try:
            assert active_watchers() == []
            names = [thread.name for thread in threading.enumerate()]
            assert not [name for name in names if name.startswith("cocalc-job-")]
        finally:
            shell.run_line_magic("load_ext", "cocalc_magics")
            job.kill(grace_s=(0.5, 0.5, 1.0))
        assert job.status == "killed"

    def test_bg_rejected_with_kernel(self, shell, fake):
        with pytest.raises(UsageError, match="--kernel"):
            shell.run_line_magic("cocalc", "exec --bg --kernel python3 1+1")
        assert fake.requests == []


class TestJobsCommands:
    def test_jobs_lists_recent(self, shell, on_local_server):
        with capture_output():
            shell.run_line_magic("cocalc", "exec -- echo listed")
        with capture_output() as captured:
            shell.run_line_magic("cocalc", "jobs --limit 5")
        text = captured.outputs[0].data["text/plain"]
        assert "echo listed" in text
        assert "completed" in text
        assert "<table>" in captured.outputs[0].data["text/html"]

    def test_job_show_and_stats(self, shell, on_local_server):
        with capture_output():
            result = shell.run_line_magic("cocalc", "exec -- echo shown")
        with capture_output() as captured:
            shell.run_line_magic("cocalc", f"job {result.job_id[:10]} --stats")
        job = shell.user_ns["_cocalc"]
        assert job.job_id == result.job_id
        texts = [output.data["text/plain"] for output in captured.outputs]
        assert "completed, exit 0" in texts[0]
        assert "CPU and memory" in texts[1]

    def test_job_wait_streams(self, shell, on_local_server):
        with capture_output():
            shell.run_line_magic("cocalc", "exec --bg -- sleep 1; echo waited")
        job_id = shell.user_ns["_cocalc"].job_id
        with capture_output() as captured:
            shell.run_line_magic("cocalc", f"job {job_id} --wait")
        assert "waited\n" in captured.stdout
        assert shell.user_ns["_cocalc"].status == "completed"

    def test_unknown_job_is_usage_error(self, shell, on_local_server):
        with pytest.raises(UsageError, match="no job 'nosuchjob'"):
            shell.run_line_magic("cocalc", "job nosuchjob")

    def test_wait_and_kill_together_rejected(self, shell, on_local_server):
        with pytest.raises(UsageError, match="either --wait or --kill"):
            shell.run_line_magic("cocalc", "job abc --wait --kill")


class TestEndings:
    def test_timeout_reports_partial_output(self, shell, on_local_server):
        with capture_output() as captured, pytest.raises(CommandFailedError) as caught:
            shell.run_line_magic("cocalc", "exec --timeout 1.5 -- echo early; sleep 30")
        result = caught.value.result
        assert result.exit_code is None
        assert result.status == "timed out"
        assert "early\n" in captured.stdout
        assert "timed out" in str(caught.value)
        assert "--timeout" in caught.value.hint

    def test_no_raise_reports_outcome(self, shell, on_local_server):
        with capture_output() as captured:
            result = shell.run_line_magic(
                "cocalc", "exec --no-raise --timeout 1.5 -- sleep 30"
            )
        assert result.status == "timed out"
        # The summary line ends the streamed output once, with no second notice.
        assert captured.stdout.count("timed out") == 1
        notices = [output.data["text/plain"] for output in captured.outputs]
        assert not any("timed out" in notice for notice in notices)


class TestLostJob:
    def test_lost_job_names_server_text(self, shell, fake):
        def respond(request):
            if request.args[0].get("async_call"):
                return cumulative_job(["x"], job_id="job-41")(request)
            return Reply.json(
                {"error": "Error: Async operation 'job-41' does not exist."}
            )

        fake.on("system.exec", respond)
        with capture_output(), pytest.raises(CommandFailedError) as caught:
            shell.run_line_magic("cocalc", "exec --timeout 600 -- long-task")
        error = caught.value
        assert error.result.status == "lost"
        assert error.result.exit_code is None
        assert "does not exist" in str(error)
        assert "--no-raise" not in error.hint
        assert "%cocalc job job-41" in error.hint
