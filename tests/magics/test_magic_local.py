"""Every subcommand and option of the magics against the real local server."""

from __future__ import annotations

import os
import re
import signal
import threading

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from traitlets import TraitError

from cocalc_magics.jobs import JobInterrupted
from cocalc_magics.magics.errors import (
    CoCalcMagicError,
    CommandFailedError,
    JobDetached,
)


def notices(captured) -> str:
    return "\n".join(o.data.get("text/plain", "") for o in captured.outputs)


@pytest.fixture
def run(shell, on_local_server):
    """Run one %cocalc line and return (result, captured output)."""

    def run_line(line: str):
        with capture_output() as captured:
            result = shell.run_line_magic("cocalc", line)
        return result, captured

    return run_line


class TestExec:
    def test_stdout_stderr_exit_code(self, run):
        result, captured = run("exec --no-raise -- echo out; echo err >&2; exit 4")
        assert captured.stdout == "out\n"
        assert captured.stderr == "err\n"
        assert result.exit_code == 4
        assert result.stdout == "out\n"
        assert result.stderr == "err\n"
        assert result.duration_s > 0
        assert "exit code 4" in notices(captured)

    def test_failure_raises_after_output(self, shell, on_local_server):
        with capture_output() as captured, pytest.raises(CommandFailedError) as caught:
            shell.run_line_magic("cocalc", "exec echo before; false")
        assert captured.stdout == "before\n"
        assert caught.value.result.exit_code == 1
        assert "local server" in str(caught.value)

    def test_missing_path_named_in_error(self, shell, on_local_server):
        with capture_output(), pytest.raises(CommandFailedError) as caught:
            shell.run_line_magic("cocalc", "exec --path no/such/folder -- true")
        error = caught.value
        assert error.result.status == "failed"
        assert "working folder (--path or --cwd)" in error.message
        assert "mkdir -p" in error.hint

    def test_missing_compute_server_named(self, shell, on_local_server):
        with capture_output() as captured, pytest.raises(CoCalcMagicError) as caught:
            shell.run_line_magic("cocalc", "exec --compute-server 3 -- true")
        assert "compute server 3 of the project does not answer" in caught.value.message
        assert "--compute-server" in caught.value.hint
        assert "Starting project" not in notices(captured)

    def test_result_stored(self, shell, run):
        result, _ = run("exec --out answer --quiet -- echo 42")
        assert shell.user_ns["answer"] is result
        assert shell.user_ns["_cocalc"] is result
        assert (
            result.project_id
            == shell.magics_manager.registry[
                "CoCalcMagics"
            ].session.connection.project_id
        )
        assert result.command == "echo 42"
        assert result.job_id
        assert result.job.job_id == result.job_id
        assert result.status == "completed"

    def test_quiet_shows_nothing(self, run):
        _, captured = run("exec --quiet -- echo hidden")
        assert captured.stdout == ""
        assert captured.outputs == []

    def test_env_path_cwd(self, run):
        run("exec mkdir -p 'dir with space'")
        result, _ = run(
            'exec --path "dir with space" --env "GREETING=hello world" '
            "-- pwd; printenv GREETING"
        )
        assert result.stdout.endswith("dir with space\nhello world\n")
        result, _ = run("exec --path 'dir with space' --cwd /tmp -- pwd")
        assert result.stdout == "/tmp\n"

    def test_non_ascii_round_trip(self, shell, on_local_server):
        text = "Grüße, 你好, Ωμέγα, 🚀"
        with capture_output() as captured:
            shell.run_cell_magic("cocalc_exec", "--out r", f'echo "{text}"\n')
        assert captured.stdout == text + "\n"
        assert shell.user_ns["r"].stdout == text + "\n"

    def test_non_utf8_output(self, run):
        result, captured = run(r"exec printf 'abc\377\376def\n'")
        assert "abc" in captured.stdout
        assert "def" in captured.stdout
        assert result.exit_code == 0

    def test_expansion_reaches_server(self, shell, run):
        shell.user_ns["word"] = "expanded"
        result, _ = run("exec echo {word} {{literal}} $((1 + 2))")
        assert result.stdout == "expanded {literal} 3\n"

    def test_exec_timeout_is_short_error(self, shell, on_local_server):
        with capture_output() as captured:
            outcome = shell.run_cell("%cocalc exec --timeout 1 sleep 10")
        error = outcome.error_in_exec
        assert isinstance(error, CoCalcMagicError)
        assert "killed" in error.message
        assert "timeout" in (error.hint or "")
        assert len((captured.stdout + captured.stderr).strip().splitlines()) <= 10

    def test_long_timeout_runs_as_job(self, run):
        result, captured = run("exec --timeout 120 -- sleep 0.5; echo done")
        assert result.stdout == "done\n"
        assert result.job_id
        assert captured.stdout == "done\n"

    def test_interrupt_stops_remote_process(self, shell, on_local_server, magics):
        magics.interrupt_grace = [1.0, 1.0, 1.0]
        timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            with capture_output() as captured, pytest.raises(JobInterrupted) as caught:
                shell.run_line_magic(
                    "cocalc", "exec --timeout 120 -- echo started; sleep 30"
                )
        finally:
            timer.cancel()

        job = caught.value.job
        assert captured.stdout.startswith("started\n")
        assert f"stopping job {job.job_id}" in captured.stderr
        assert job.signals_sent[0] == "SIGINT"
        assert job.status == "killed"
        stored = shell.user_ns["_cocalc"]
        assert stored.job_id == job.job_id
        assert stored.stdout == "started\n"
        remote = magics.session.connection.async_get(job.job_id)
        assert not remote.running

    def test_interrupt_shown_without_traceback(self, shell, on_local_server, magics):
        magics.interrupt_grace = [1.0, 1.0, 1.0]
        timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            with capture_output() as captured:
                outcome = shell.run_cell("%cocalc exec --timeout 120 -- sleep 30")
        finally:
            timer.cancel()

        job = outcome.error_in_exec.job
        # The job's summary line, then the two lines shown for the exception.
        output_lines = captured.stdout.splitlines()
        assert isinstance(outcome.error_in_exec, JobInterrupted)
        assert "Traceback" not in captured.stdout
        assert len(output_lines) == 3, captured.stdout
        assert "JobInterrupted" in output_lines[1]
        assert f"job {job.job_id} (status: killed)" in output_lines[1]
        assert f"%cocalc job {job.short_id}" in output_lines[2]

    def test_detach_leaves_job_running(self, shell, on_local_server, magics):
        timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            with capture_output() as captured, pytest.raises(JobDetached) as caught:
                shell.run_line_magic(
                    "cocalc", "exec --detach --timeout 120 -- sleep 30"
                )
        finally:
            timer.cancel()

        result = shell.user_ns["_cocalc"]
        assert f"Detached: job {result.job_id}" in captured.stderr
        error_lines = caught.value._render_traceback_()
        assert len(error_lines) == 2
        assert "keeps running" in error_lines[0]
        assert f"%cocalc job {result.job_id[:8]} --kill" in error_lines[1]
        connection = magics.session.connection
        assert connection.async_get(result.job_id).running

        with capture_output():
            shell.run_line_magic("cocalc", f"job {result.job_id[:8]} --kill")
        assert shell.user_ns["_cocalc"].status == "killed"
        assert not connection.async_get(result.job_id).running

    def test_display_budget_cuts_output(self, shell, run, magics):
        magics.output_budget = 20_000
        result, captured = run("exec --out big -- seq 1 100000")
        assert len(captured.stdout.encode()) < 21_000
        assert "lines (" in captured.stdout
        assert result.stdout.count("\n") == 100_000
        assert "big.stdout" in notices(captured)

    def test_server_max_output_notice(self, run):
        result, captured = run("exec --max-output 100 -- seq 1 1000")
        assert result.stdout_truncated
        assert len(result.stdout) <= 100
        assert "--max-output" in notices(captured)

    def test_cell_form(self, shell, on_local_server):
        with capture_output() as captured:
            shell.run_cell_magic(
                "cocalc_exec", "--out cell_result", "x=1\necho $((x + 1))\n"
            )
        assert captured.stdout == "2\n"
        assert shell.user_ns["cell_result"].exit_code == 0

    def test_dry_run_masks_key(self, run, on_local_server):
        _, captured = run("exec --dry-run -- echo never")
        text = notices(captured)
        assert on_local_server.api_key not in text
        assert '"command": "echo never"' in text
        assert "Dry run on local server" in text


class TestProjectSubcommands:
    def test_ping(self, run, on_local_server):
        _, captured = run("ping")
        assert f"Project {on_local_server.project_id} on local server" in notices(
            captured
        )
        _, captured = run("ping --hub")
        assert "Hub of local server" in notices(captured)

    def test_status_quotas(self, run):
        _, captured = run("status")
        assert re.search(r"state\s+running", notices(captured))
        _, captured = run("quotas")
        text = notices(captured)
        assert re.search(r"disk_quota\s+3000", text)
        assert "Run quota" in text
        html = captured.outputs[0].data["text/html"]
        assert "<table>" in html

    def test_projects_kernels_ls(self, run, on_local_server):
        _, captured = run("projects")
        assert on_local_server.project_id in notices(captured)
        _, captured = run("kernels")
        assert "python3" in notices(captured)
        run("exec mkdir -p listed && touch listed/a.txt listed/.hidden")
        _, captured = run("ls listed")
        assert "a.txt" in notices(captured)
        assert ".hidden" not in notices(captured)
        _, captured = run("ls --hidden listed")
        assert ".hidden" in notices(captured)

    def test_call_both_endpoints(self, run, on_local_server):
        state, _ = run(
            f'call projects.state \'{{"project_id": "{on_local_server.project_id}"}}\''
        )
        assert state["state"] == "running"
        now, _ = run("call system.ping")
        assert "now" in now
        pong, _ = run("call --project-endpoint ping")
        assert pong == "pong"

    def test_call_remote_error_short(self, shell, on_local_server):
        with capture_output():
            outcome = shell.run_cell("%cocalc call --hub nosuch.method '[]'")
        assert isinstance(outcome.error_in_exec, CoCalcMagicError)
        assert "nosuch.method" in str(outcome.error_in_exec)

    def test_stop_then_exec_starts_visibly(self, run, on_local_server):
        _, captured = run("stop")
        assert "stopped" in notices(captured)
        _, captured = run("status")
        assert not re.search(r"state\s+running", notices(captured))
        result, captured = run("exec echo back")
        assert result.stdout == "back\n"
        assert "Starting project" in notices(captured) or "started" in notices(captured)

    def test_restart_and_start(self, run):
        _, captured = run("restart")
        text = notices(captured)
        assert "stopped" in text
        assert "started" in text
        _, captured = run("start")
        assert "started" in notices(captured)
        _, captured = run("status")
        assert re.search(r"state\s+running", notices(captured))


class TestSetupSubcommands:
    def test_config_masks_key(self, run, on_local_server):
        _, captured = run("config")
        text = notices(captured)
        assert on_local_server.api_key not in text
        assert "sk-…" in text
        assert "local server" in text
        assert "output_budget" in text

    def test_doctor_all_ok(self, run, on_local_server):
        _, captured = run("doctor")
        text = notices(captured)
        assert "Nothing is missing." in text
        assert "[fail]" not in text
        assert on_local_server.api_key not in text

    def test_doctor_bad_key(self, shell, magics, on_local_server):
        from cocalc_magics.api import Connection

        bad_key = "sk-INVALIDKEY0000000000"
        magics.session.replace(
            Connection(
                host=on_local_server.url,
                api_key=bad_key,
                project_id=on_local_server.project_id,
            )
        )
        with capture_output() as captured:
            shell.run_line_magic("cocalc", "doctor")
        text = notices(captured)
        assert "[fail]" in text
        assert "API key" in text
        assert bad_key not in text

    def test_doctor_without_key(self, shell, magics, monkeypatch, tmp_path):
        monkeypatch.delenv("COCALC_API_KEY", raising=False)
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
        magics.session.close()
        with capture_output() as captured:
            shell.run_line_magic("cocalc", "doctor")
        text = notices(captured)
        assert "no API key" in text
        assert "%cocalc local" in text
        key_lines = [line for line in text.splitlines() if "API key: not set" in line]
        assert key_lines
        assert all(line.startswith("[warn]") for line in key_lines)

    def test_connect_key_from_env(self, shell, magics, monkeypatch, on_local_server):
        monkeypatch.setenv("MY_COCALC_KEY", on_local_server.api_key)
        line = (
            f"connect --host {on_local_server.url} --project "
            f"{on_local_server.project_id} --key-env MY_COCALC_KEY"
        )
        with capture_output() as captured:
            shell.run_line_magic("cocalc", line)
        text = notices(captured)
        assert on_local_server.api_key not in text
        assert "API key: sk-…" in text
        assert "(from --key-env MY_COCALC_KEY)" in text
        assert f"Using {on_local_server.url} from now on (not contacted yet)." in text
        assert f"{on_local_server.url} (from --host)" in text
        assert "(from --project)" in text
        result = shell.run_line_magic("cocalc", "exec --quiet -- echo connected")
        assert result.stdout == "connected\n"

    def test_connect_prompt_key(self, shell, magics, monkeypatch, on_local_server):
        prompts = []

        def fake_getpass(prompt):
            prompts.append(prompt)
            return on_local_server.api_key

        # getpass reads the terminal; replacing it is the only way to type a key.
        monkeypatch.setattr("getpass.getpass", fake_getpass)
        with capture_output() as captured:
            shell.run_line_magic(
                "cocalc",
                f"connect --host {on_local_server.url} --project "
                f"{on_local_server.project_id} --prompt-key",
            )
        assert prompts
        assert on_local_server.api_key not in notices(captured)
        assert "(from --prompt-key)" in notices(captured)
        result = shell.run_line_magic("cocalc", "exec --quiet -- echo prompted")
        assert result.stdout == "prompted\n"

    def test_connect_missing_env_variable(self, shell, monkeypatch):
        monkeypatch.delenv("NO_SUCH_KEY_VARIABLE", raising=False)
        with pytest.raises(UsageError, match="NO_SUCH_KEY_VARIABLE"):
            shell.run_line_magic("cocalc", "connect --key-env NO_SUCH_KEY_VARIABLE")

    def test_local_with_isolated_dir(self, shell, magics, monkeypatch, tmp_path):
        from cocalc_magics.server import stop_local_server

        data_dir = tmp_path / "local-data"
        monkeypatch.setenv("COCALC_MAGICS_LOCAL_DIR", str(data_dir))
        try:
            with capture_output() as captured:
                shell.run_line_magic("cocalc", "local")
                result = shell.run_line_magic("cocalc", "exec --quiet -- echo here")
            assert "Using the local server" in notices(captured)
            assert "not cocalc.com" in notices(captured)
            assert str(data_dir) in notices(captured)
            assert (data_dir / "connection.json").exists()
            assert result.stdout == "here\n"
            assert result.site.startswith("local server")
            with capture_output() as captured:
                shell.run_line_magic("cocalc", "local --stop")
            assert "stopped" in notices(captured)
        finally:
            stop_local_server(data_dir)


class TestConfigAfterConnect:
    def test_project_trait_applies_to_connection(self, shell, magics, on_local_server):
        other = "0b9f0e3c-2f4e-4a63-9f3c-1d2e3f4a5b6c"
        before = magics.session.connection
        with capture_output() as captured:
            shell.run_line_magic("config", f"CoCalcMagics.project = '{other.upper()}'")
        after = magics.session.connection
        assert after.project_id == other
        assert after.host == before.host
        assert after.label == before.label
        assert f"now use project {other}" in notices(captured)
        assert "(from CoCalcMagics.project)" in "\n".join(after.settings.describe())

    def test_invalid_project_trait_rejected(self, magics):
        with pytest.raises(TraitError, match="must be a project id"):
            magics.project = "abc"

    def test_host_trait_resets_connection(self, shell, magics, on_local_server):
        assert magics.session.connection is not None
        with capture_output() as captured:
            magics.host = on_local_server.url
        assert magics.session._connection is None
        assert "new settings on next use" in notices(captured)
