"""The requests the magics send, checked on the fake CoCalc server of tests/support.

Every test runs the magic through a real IPython shell and reads the JSON bodies
the server recorded: what reaches CoCalc, in which units, and what does not.
"""

from __future__ import annotations

import itertools
import json
import time

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from cocalc_magics.magics.errors import CoCalcMagicError, CommandFailedError
from tests.magics.conftest import CANARY_KEY, PROJECT_ID, job_responder
from tests.support.fake_server import Reply


def answer_exec(fake, payload, status=200):
    """Make the fake server reply to every system.exec with ``payload``."""
    fake.on("system.exec", lambda request: Reply.json(payload, status=status))


def answer_job(fake, final):
    """Make every command a job that ends with ``final`` (stdout, stderr, exit)."""
    fake.on("system.exec", job_responder(lambda command: dict(final)))


def exec_requests(fake):
    return [r for r in fake.requests_for("system.exec") if "async_get" not in r.args[0]]


def sent_command(fake) -> str:
    (request,) = exec_requests(fake)
    return request.args[0]["command"]


class TestExpansion:
    def test_dollar_name_left_for_remote_shell(self, shell, fake):
        shell.user_ns["HOME"] = "/local/python/value"
        shell.run_line_magic("cocalc", "exec echo $HOME")
        assert sent_command(fake) == "echo $HOME"

    def test_braces_expand_dollar_stays(self, shell, fake):
        shell.user_ns.update(n=3, HOME="/local/python/value")
        shell.run_line_magic("cocalc", "exec echo {n} $HOME")
        assert sent_command(fake) == "echo 3 $HOME"

    def test_undefined_name_sends_nothing(self, shell, fake):
        shell.user_ns["n"] = 3
        with pytest.raises(UsageError) as caught:
            shell.run_line_magic("cocalc", "exec echo {n} {missing}")
        assert type(caught.value) is UsageError
        assert "missing" in str(caught.value)
        assert fake.requests == []

    def test_empty_braces_sent_as_typed(self, shell, fake):
        line = "find . -name '*.txt' -exec wc -l {} +"
        shell.run_line_magic("cocalc", f"exec {line}")
        assert sent_command(fake) == line

    def test_local_value_never_sent(self, shell, fake):
        shell.user_ns["HOME"] = "/local/python/value"
        shell.run_cell("%cocalc exec echo $HOME ${HOME}")
        shell.run_cell("%%cocalc_exec --path $HOME\necho $HOME\n")
        for request in fake.requests:
            assert "/local/python/value" not in request.body.decode("utf-8")

    def test_field_with_spaces_expanded_whole(self, shell, fake):
        shell.user_ns.update(n=3, d={"k": "v"})
        shell.run_line_magic("cocalc", "exec echo {n + 1} {d['k']}")
        assert sent_command(fake) == "echo 4 v"

    def test_field_evaluated_once(self, shell, fake):
        calls = []
        shell.user_ns["tick"] = lambda value: calls.append(value) or value
        shell.run_line_magic("cocalc", "exec --timeout {tick(9)} echo {tick('a')}")
        (request,) = exec_requests(fake)
        assert request.args[0]["timeout"] == 9
        assert request.args[0]["command"] == "echo a"
        assert calls == [9, "a"]

    def test_field_in_variable_option(self, shell, fake):
        shell.user_ns["name"] = "listing"
        shell.run_line_magic("cocalc", "exec --quiet --out {name} echo hi")
        assert "listing" in shell.user_ns

    def test_expansion_in_option_values(self, shell, fake):
        shell.user_ns.update(folder="My Project", seconds=7)
        shell.run_line_magic("cocalc", "exec --path {folder} --timeout {seconds} ls")
        (request,) = exec_requests(fake)
        assert request.args[0]["path"] == "My Project"
        assert request.args[0]["timeout"] == 7


class TestQuoting:
    def test_cwd_with_spaces(self, shell, fake):
        shell.run_line_magic("cocalc", 'exec --cwd "/home/user/My Project" ls -la')
        (request,) = exec_requests(fake)
        assert request.args[0]["cwd"] == "/home/user/My Project"
        assert request.args[0]["command"] == "ls -la"

    def test_env_values_with_spaces_and_empty(self, shell, fake):
        shell.run_line_magic(
            "cocalc",
            """exec --env "GREETING=hello world" --env 'EMPTY=' printenv GREETING""",
        )
        (request,) = exec_requests(fake)
        assert request.args[0]["env"] == {"GREETING": "hello world", "EMPTY": ""}
        assert request.args[0]["command"] == "printenv GREETING"

    def test_cell_path_with_space(self, shell, fake):
        shell.run_cell_magic("cocalc_exec", '--path "notes/Week 1"', "ls\n")
        (request,) = exec_requests(fake)
        assert request.args[0]["path"] == "notes/Week 1"

    def test_apostrophe_in_command(self, shell, fake):
        shell.run_line_magic("cocalc", """exec echo "it's here\"""")
        (request,) = exec_requests(fake)
        assert request.args[0]["command"] == """echo "it's here\""""
        assert request.args[0]["bash"] is True

    def test_unbalanced_quote_sends_nothing(self, shell, fake):
        with pytest.raises(UsageError):
            shell.run_line_magic("cocalc", 'exec echo "oops')
        assert fake.requests == []

    def test_double_dash_separates_command(self, shell, fake):
        shell.run_line_magic("cocalc", "exec --timeout 5 -- --version-like --flag")
        assert sent_command(fake) == "--version-like --flag"


class TestNoRequestOnBadInput:
    @pytest.mark.parametrize("line", ["exec", "", "exec --timeout 3", "exec --"])
    def test_line_forms(self, shell, fake, line):
        if line:
            with pytest.raises(UsageError):
                shell.run_line_magic("cocalc", line)
        else:
            shell.run_line_magic("cocalc", line)
        assert fake.requests == []

    @pytest.mark.parametrize("body", ["", "\n  \n\t\n"])
    def test_empty_cells(self, shell, fake, body):
        with pytest.raises(UsageError):
            shell.run_cell_magic("cocalc_exec", "--cwd /tmp", body)
        assert fake.requests == []


class TestCellBody:
    def test_body_sent_byte_for_byte(self, shell, fake):
        body = (
            "set -e\n"
            "echo {n} $HOME ${X:-d} '{}' \"$(date)\"\n"
            "printf '%s\\n' \"Grüße, 你好, Ωμέγα, 🚀\"\r\n"
            "\tcat <<'EOF'\n{{literal}}\nEOF\n"
        )
        shell.user_ns["n"] = 3
        shell.run_cell_magic("cocalc_exec", "", body)
        (request,) = exec_requests(fake)
        assert request.args[0]["command"] == body
        assert request.args[0]["bash"] is True

    def test_non_ascii_cwd_round_trips(self, shell, fake):
        shell.run_line_magic("cocalc", 'exec --cwd "/home/user/Données" ls')
        (request,) = exec_requests(fake)
        assert request.args[0]["cwd"] == "/home/user/Données"


class TestUnitsAndLimits:
    def test_short_command_runs_as_job(self, shell, fake):
        shell.run_line_magic("cocalc", "exec --timeout 10 sleep 5")
        (request,) = exec_requests(fake)
        assert request.args[0]["timeout"] == 10
        assert request.args[0]["async_call"] is True
        assert 1_000 <= request.json["timeout"] <= 60_000
        assert request.args[0]["err_on_exit"] is False

    def test_max_output_always_finite(self, shell, fake, magics):
        shell.run_line_magic("cocalc", "exec cat big.log")
        shell.run_line_magic("cocalc", "exec --max-output 500 cat big.log")
        first, second = exec_requests(fake)
        assert first.args[0]["max_output"] == magics.max_output
        assert 0 < first.args[0]["max_output"] <= 2_000_000
        assert second.args[0]["max_output"] == 500

    def test_long_command_uses_async_job(self, shell, fake):
        shell.run_line_magic("cocalc", "exec --timeout 1800 python train.py")
        start, *polls = fake.requests_for("system.exec")
        assert start.args[0]["async_call"] is True
        assert start.args[0]["timeout"] == 1800
        assert start.json["timeout"] <= 60_000
        assert polls
        for poll in polls:
            assert poll.args[0]["async_get"] == "job-1"
            assert poll.json["timeout"] <= 60_000

    def test_long_poll_loops_until_done(self, shell, fake):
        replies = iter(["running", "running", "completed"])

        def responder(request):
            if request.args[0].get("async_call"):
                status = "running"
            else:
                status = next(replies)
            return {
                "type": "async",
                "job_id": "job-7",
                "status": status,
                "stdout": "1\n2\n" if status == "completed" else "1\n",
                "stderr": "",
                "exit_code": 0,
                "start": 1,
            }

        fake.on("system.exec", responder)
        with capture_output() as captured:
            result = shell.run_line_magic("cocalc", "exec --timeout 600 train")
        assert result.job_id == "job-7"
        assert result.stdout == "1\n2\n"
        # Only the new part is written on each poll, so nothing repeats.
        assert captured.stdout.startswith("1\n2\n")
        assert captured.stdout.count("1\n") == 1
        assert len(fake.requests_for("system.exec")) == 4

    def test_job_killed_at_timeout(self, shell, fake):
        def responder(request):
            record = {"type": "async", "job_id": "job-9", "start": 1, "stdout": ""}
            if request.args[0].get("async_call"):
                return {**record, "status": "running", "stderr": "", "exit_code": 0}
            killed = "killed command 'bash /tmp/cocalc-x/a.sh'"
            return {**record, "status": "error", "stderr": killed, "exit_code": 1}

        fake.on("system.exec", responder)
        with capture_output():
            outcome = shell.run_cell("%cocalc exec --timeout 120 -- sleep 500")
        error = outcome.error_in_exec
        assert isinstance(error, CoCalcMagicError)
        assert isinstance(error, CommandFailedError)
        assert "job-9" in str(error)
        assert "timed out" in str(error)
        assert "--timeout" in error.hint

    def test_compute_server_is_integer(self, shell, fake):
        shell.run_line_magic("cocalc", "exec --compute-server 3 hostname")
        (request,) = exec_requests(fake)
        assert request.json["compute_server_id"] == 3
        assert request.json["project_id"] == PROJECT_ID

    def test_project_option_overrides(self, shell, fake):
        other = "99999999-2222-3333-4444-555555555555"
        shell.run_line_magic("cocalc", f"exec --project {other} hostname")
        (request,) = exec_requests(fake)
        assert request.json["project_id"] == other


class TestDryRun:
    def test_shows_request_sends_nothing(self, shell, fake):
        with capture_output() as captured:
            shell.run_line_magic("cocalc", "exec --dry-run --env A=1 -- echo hi")
        assert fake.requests == []
        text = captured.outputs[0].data["text/plain"]
        assert '"command": "echo hi"' in text
        assert '"max_output"' in text
        assert "Bearer sk-" in text
        assert CANARY_KEY not in text
        assert "/api/conat/project" in text
        request = json.loads(text[text.index("{") :])
        read_timeout = request["timeout_s"]["read"]
        assert read_timeout > request["json"]["timeout"] / 1000
        assert request["json"]["args"][0]["timeout"] == 50

    def test_cell_dry_run(self, shell, fake):
        with capture_output() as captured:
            shell.run_cell_magic("cocalc_exec", "--dry-run --timeout 300", "make\n")
        assert fake.requests == []
        text = captured.outputs[0].data["text/plain"]
        assert '"async_call": true' in text


FAILING = {
    "stdout": "after\n",
    "stderr": "grep: haystack.txt: No such file or directory\n",
    "exit_code": 2,
}


class TestFailingCommands:
    def test_output_shown_then_raises(self, shell, fake):
        answer_job(fake, FAILING)
        with capture_output() as captured, pytest.raises(CommandFailedError) as caught:
            shell.run_cell_magic(
                "cocalc_exec",
                "",
                "grep -q needle haystack.txt; echo after; exit 2\n",
            )
        assert captured.stdout == "after\n"
        assert "haystack.txt" in captured.stderr
        rendered = "\n".join(caught.value._render_traceback_())
        assert "exited with code 2" in rendered
        assert "--no-raise" in rendered
        assert PROJECT_ID in rendered

    def test_no_raise_keeps_result(self, shell, fake):
        answer_job(fake, FAILING)
        with capture_output() as captured:
            shell.run_cell_magic("cocalc_exec", "--no-raise --out r", "exit 2\n")
        result = shell.user_ns["r"]
        assert result.exit_code == 2
        assert result.stdout == "after\n"
        assert "haystack" in result.stderr
        assert captured.stdout == "after\n"
        assert any("exit code 2" in o.data["text/plain"] for o in captured.outputs)

    def test_line_form_returns_result(self, shell, fake):
        answer_job(fake, {"stdout": "", "stderr": "", "exit_code": 1})
        result = shell.run_line_magic("cocalc", "exec --no-raise false")
        assert result.exit_code == 1
        assert not result.ok

    def test_raise_on_failure_trait(self, shell, fake, magics):
        answer_job(fake, FAILING)
        magics.raise_on_failure = False
        with capture_output():
            result = shell.run_line_magic("cocalc", "exec false")
        assert result.exit_code == 2

    def test_run_cell_stops_with_short_error(self, shell, fake):
        answer_job(fake, FAILING)
        with capture_output() as captured:
            outcome = shell.run_cell("%cocalc exec false\nafter_failure = 1")
        assert isinstance(outcome.error_in_exec, CommandFailedError)
        assert "after_failure" not in shell.user_ns
        assert "Traceback" not in captured.stdout + captured.stderr


class TestServerErrors:
    def test_remote_error_is_short(self, shell, fake):
        message = "ls: cannot access '/nonexistent': No such file or directory"
        answer_exec(fake, {"error": message})
        with capture_output() as captured:
            outcome = shell.run_cell("%cocalc exec ls /nonexistent")
        error = outcome.error_in_exec
        assert isinstance(error, CoCalcMagicError)
        shown = captured.stdout + captured.stderr
        assert message in shown
        assert "project exec" in shown
        assert PROJECT_ID in shown
        assert len(shown.strip().splitlines()) <= 10
        for internal in ("cocalc_magics/", "requests/", "urllib3", "IPython/core"):
            assert internal not in shown

    def test_nonzero_exit_envelope_shows_stderr(self, shell, fake):
        message = (
            "command 'grep -q needle haystack.txt' exited with nonzero code 2 -- "
            "stderr='grep: haystack.txt: No such file or directory\\n'"
        )
        answer_exec(fake, {"error": message})
        with capture_output() as captured:
            outcome = shell.run_cell("%cocalc exec grep -q needle haystack.txt")
        assert isinstance(outcome.error_in_exec, CoCalcMagicError)
        shown = captured.stdout + captured.stderr
        assert "haystack.txt: No such file or directory" in shown
        assert "code 2" in shown

    def test_debug_switch_shows_chain(self, shell, fake, magics):
        from cocalc_magics.api import RemoteError

        answer_exec(fake, {"error": "Error: boom"})
        magics.show_tracebacks = True
        with pytest.raises(RemoteError):
            shell.run_line_magic("cocalc", "exec ls")

    def test_unauthorized_never_echoes_key(self, shell, fake):
        answer_exec(fake, {"error": "invalid api key"}, status=401)
        with capture_output() as captured:
            outcome = shell.run_cell("%cocalc exec echo hi")
        assert outcome.error_in_exec is not None
        shown = captured.stdout + captured.stderr
        assert "401" in shown or "auth" in shown.lower()
        assert CANARY_KEY not in shown
        assert CANARY_KEY not in str(outcome.error_in_exec)


PROJECT_SCOPED_REFUSAL = {"error": "not allowed with a project-specific api key"}


class TestStoppedProject:
    def stopped_until_started(
        self, fake, *, failing_pings=2, start_reply=None, state="running"
    ):
        """Answer project calls with "no host" until projects.start arrives.

        After the start, the first ``failing_pings`` pings get the bridge's 503.
        ``state`` is what the hub reports for the project before the start.
        """
        progress = {"started": False, "pings": 0}

        def start(request):
            if start_reply is not None:
                return start_reply
            progress["started"] = True
            return {}

        def project_state(request):
            return {"state": "running" if progress["started"] else state}

        def ping(request):
            if not progress["started"]:
                return {"error": "no host"}
            progress["pings"] += 1
            if progress["pings"] <= failing_pings:
                return {
                    "error": "request -- no subscribers matching "
                    f"'project.{PROJECT_ID}.0.api.-' - callHub: code='503' "
                }
            return {"now": 1}

        def execute(request):
            if not progress["started"]:
                return {"error": "no host"}
            # A 60 s timeout runs as an async job: started, then long-polled.
            return {
                "type": "async",
                "job_id": "job-2",
                "status": "completed",
                "stdout": "Mon\n",
                "stderr": "",
                "exit_code": 0,
                "start": 1,
            }

        fake.on("projects.start", start)
        fake.on("projects.state", project_state)
        fake.on("system.ping", ping)
        fake.on("system.exec", execute)

    def test_started_then_exec_once(self, shell, fake):
        self.stopped_until_started(fake)
        with capture_output() as captured:
            result = shell.run_line_magic("cocalc", "exec --timeout 60 date")
        assert result.stdout == "Mon\n"
        assert len(fake.requests_for("projects.start")) == 1
        assert fake.requests_for("projects.start")[0].args[0] == {
            "project_id": PROJECT_ID
        }
        execs = exec_requests(fake)
        assert len(execs) == 2
        assert all(request.args[0]["async_call"] for request in execs)
        assert (
            execs[0].arrived_monotonic
            < fake.requests_for("projects.start")[0].arrived_monotonic
            < execs[1].arrived_monotonic
        )
        pings = fake.requests_for("system.ping")
        assert len(pings) == 3
        gaps = [
            b.arrived_monotonic - a.arrived_monotonic
            for a, b in itertools.pairwise(pings)
        ]
        assert min(gaps) >= 0.9
        notices = " ".join(o.data.get("text/plain", "") for o in captured.outputs)
        assert "Starting project" in notices or "started" in notices

    def test_stopped_state_starts_before_exec(self, shell, fake):
        self.stopped_until_started(fake, failing_pings=0, state="opened")
        with capture_output() as captured:
            result = shell.run_line_magic("cocalc", "exec --timeout 60 date")
        assert result.stdout == "Mon\n"
        assert len(exec_requests(fake)) == 1
        (start,) = fake.requests_for("projects.start")
        assert start.arrived_monotonic < exec_requests(fake)[0].arrived_monotonic
        assert "Project " in " ".join(
            o.data.get("text/plain", "") for o in captured.outputs
        )

    def test_running_state_checked_once(self, shell, fake):
        shell.run_line_magic("cocalc", "exec --quiet -- true")
        shell.run_line_magic("cocalc", "exec --quiet -- true")
        assert len(fake.requests_for("projects.state")) == 1
        assert len(exec_requests(fake)) == 2

    def test_project_key_cannot_start(self, shell, fake):
        self.stopped_until_started(fake, start_reply=PROJECT_SCOPED_REFUSAL)
        with capture_output() as captured:
            outcome = shell.run_cell("%cocalc exec --timeout 60 date")
        error = outcome.error_in_exec
        assert isinstance(error, CoCalcMagicError)
        assert "web UI" in (error.hint or "")
        assert len(exec_requests(fake)) == 1
        assert "project-specific" in captured.stdout + captured.stderr

    def test_gives_up_at_timeout(self, shell, fake):
        self.stopped_until_started(fake, failing_pings=10_000)
        started = time.monotonic()
        with capture_output():
            outcome = shell.run_cell("%cocalc exec --timeout 3 date")
        elapsed = time.monotonic() - started
        assert isinstance(outcome.error_in_exec, CoCalcMagicError)
        assert "did not answer" in str(outcome.error_in_exec)
        assert 2.0 <= elapsed < 8.0
        assert len(exec_requests(fake)) == 1
        assert len(fake.requests_for("system.ping")) <= 4

    def test_no_start_when_disabled(self, shell, fake, magics):
        self.stopped_until_started(fake)
        magics.start_stopped_projects = False
        with capture_output() as captured:
            outcome = shell.run_cell("%cocalc exec date")
        assert isinstance(outcome.error_in_exec, CoCalcMagicError)
        assert fake.requests_for("projects.start") == []
        assert (
            "not running" in (captured.stdout + captured.stderr).lower()
            or "no host" in captured.stdout + captured.stderr
        )
