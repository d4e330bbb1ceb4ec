"""``--projects`` and ``%cocalc retry`` through the magics, on the local server."""

from __future__ import annotations

import os
import signal
import threading
import uuid

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from cocalc_magics.fanout import FanoutInterrupted, FanoutPlan, FanoutResult
from cocalc_magics.magics.errors import CommandFailedError
from cocalc_magics.magics.fanout_commands import FanoutFailedError, raw_option_value

UNKNOWN_PROJECT = "99999999-8888-7777-6666-555555555555"


@pytest.fixture
def lab(shell, magics, on_local_server):
    """Three new projects, in the user namespace as lab_ids; lab_title finds them.

    The title is unique per test, because the session's server keeps the
    projects of earlier tests.
    """
    connection = magics.session.connection
    title = f"Magic lab {uuid.uuid4().hex[:8]}"
    ids = [connection.create_project(f"{title} {n}") for n in range(3)]
    shell.user_ns["lab_ids"] = ids
    shell.user_ns["lab_title"] = title
    return ids


def texts(captured) -> str:
    return (
        "\n".join(output.data.get("text/plain", "") for output in captured.outputs)
        + captured.stdout
    )


class TestOptionParsing:
    def test_raw_value_forms(self):
        words = ["--projects", "{ids}", "--", "--projects", "x"]
        assert raw_option_value(words, "--projects") == "{ids}"
        assert raw_option_value(["--projects={ids}"], "--projects") == "{ids}"
        assert raw_option_value(["--", "--projects", "x"], "--projects") is None

    def test_bad_id_is_usage_error(self, shell, fake):
        with pytest.raises(UsageError, match="not-a-project"):
            shell.run_line_magic("cocalc", "exec --projects not-a-project -- true")
        assert fake.requests_for("system.exec") == []

    def test_project_and_projects_rejected(self, shell, fake):
        with pytest.raises(UsageError, match="not both"):
            shell.run_line_magic(
                "cocalc",
                f"exec --project {UNKNOWN_PROJECT} --projects {UNKNOWN_PROJECT} true",
            )

    def test_bg_rejected_with_projects(self, shell, fake):
        with pytest.raises(UsageError, match="--bg"):
            shell.run_line_magic("cocalc", f"exec --bg --projects {UNKNOWN_PROJECT} ls")

    def test_fanout_options_need_projects(self, shell, fake):
        for line in ("start --dry-run", "stop --out x", "status --no-raise"):
            with pytest.raises(UsageError, match="only with --projects"):
                shell.run_line_magic("cocalc", line)
        with pytest.raises(UsageError, match="only with --projects"):
            shell.run_line_magic("cocalc", "exec --concurrency 3 true")
        assert fake.requests == []

    def test_bad_concurrency(self, shell, fake):
        with pytest.raises(UsageError, match="concurrency"):
            shell.run_line_magic(
                "cocalc", f"exec --projects {UNKNOWN_PROJECT} --concurrency 0 true"
            )


class TestExecMany:
    def test_expression_passes_object(self, shell, lab):
        shell.user_ns["calls"] = []
        shell.user_ns["pick"] = lambda ids: shell.user_ns["calls"].append(1) or ids

        with capture_output():
            shell.run_line_magic(
                "cocalc", "exec --projects {pick(lab_ids)} --out run -- echo hi"
            )
        result = shell.user_ns["run"]
        assert isinstance(result, FanoutResult)
        assert shell.user_ns["_cocalc"] is result
        assert [row.project_id for row in result] == lab
        assert all(row.ok for row in result)
        assert [row.stdout for row in result] == ["hi\n"] * 3
        # The expression ran once, though the option is read twice.
        assert shell.user_ns["calls"] == [1]

    def test_id_list_and_cell_form(self, shell, lab):
        line = f"--projects {','.join(lab[:2])} --concurrency 2"
        with capture_output():
            shell.run_cell_magic("cocalc_exec", line, "echo cell\n")
        result = shell.user_ns["_cocalc"]
        assert [row.project_id for row in result] == lab[:2]
        assert [row.stdout for row in result] == ["cell\n", "cell\n"]

    def test_file_of_ids(self, shell, lab, tmp_path):
        listing = tmp_path / "students.txt"
        listing.write_text("# class\n" + "\n".join(lab) + "\n")
        with capture_output():
            shell.run_line_magic("cocalc", f"exec --projects @{listing} -- true")
        assert len(shell.user_ns["_cocalc"]) == 3

    def test_title_search_dry_run(self, shell, lab):
        connection = shell.magics_manager.registry["CoCalcMagics"].session.connection
        connection.start_project(lab[0])
        with capture_output() as captured:
            value = shell.run_line_magic(
                "cocalc", "exec --projects 'title:{lab_title}' --dry-run -- ls"
            )
        assert value is None
        plan = captured.outputs[0].data["text/plain"]
        assert "3 projects would be touched" in plan
        assert "2 of them would have to be started" in plan
        assert "nothing was started" in plan
        assert isinstance(shell.user_ns["_cocalc"], FanoutPlan)
        assert len(shell.user_ns["_cocalc"].to_start) == 2

    def test_failure_raises_short_error(self, shell, lab):
        targets = f"{lab[0]},{UNKNOWN_PROJECT}"
        with capture_output():
            outcome = shell.run_cell(f"%cocalc exec --projects {targets} -- true")
        error = outcome.error_in_exec
        assert isinstance(error, FanoutFailedError)
        assert isinstance(error, CommandFailedError)
        assert "1 of 2 projects failed" in str(error)
        assert "%cocalc retry" in error.hint
        assert "retry_failed(_cocalc)" in error.hint
        assert len(error._render_traceback_()) <= 3
        assert shell.user_ns["_cocalc"] is error.result

    def test_no_raise_keeps_table(self, shell, lab):
        with capture_output():
            value = shell.run_line_magic(
                "cocalc",
                f"exec --projects {lab[0]},{UNKNOWN_PROJECT} --no-raise -- true",
            )
        assert value is None
        assert len(shell.user_ns["_cocalc"].failed()) == 1


class TestRetry:
    def test_retry_reruns_failed_only(self, shell, lab, magics):
        connection = magics.session.connection
        with capture_output():
            shell.run_line_magic(
                "cocalc",
                "exec --projects {lab_ids} --out first --no-raise -- "
                "test -f ready && echo ready",
            )
        first = shell.user_ns["first"]
        assert len(first.failed()) == 3
        for project_id in lab[:2]:
            connection.exec("touch ready", bash=True, project_id=project_id)

        with capture_output():
            outcome = shell.run_cell("%cocalc retry first")
        assert isinstance(outcome.error_in_exec, FanoutFailedError)
        merged = shell.user_ns["first"]
        assert shell.user_ns["_cocalc"] is merged
        assert [row.ok for row in merged] == [True, True, False]
        assert "1 of 3 projects still failed after retrying 3" in str(
            outcome.error_in_exec
        )

        connection.exec("touch ready", bash=True, project_id=lab[2])
        with capture_output():
            shell.run_line_magic("cocalc", "retry first")
        assert shell.user_ns["first"].ok

        with capture_output() as captured:
            shell.run_line_magic("cocalc", "retry first")
        assert "nothing to retry" in captured.stdout

    def test_retry_needs_a_table(self, shell, on_local_server):
        shell.user_ns["_cocalc"] = 42
        with pytest.raises(UsageError, match="contains int"):
            shell.run_line_magic("cocalc", "retry")


class TestProjectCommands:
    def test_status_start_stop_many(self, shell, lab):
        with capture_output():
            shell.run_line_magic("cocalc", "stop --projects {lab_ids}")
        assert shell.user_ns["_cocalc"].ok

        with capture_output() as captured:
            shell.run_line_magic("cocalc", "start --projects {lab_ids} --dry-run")
        assert "3 of them would have to be started" in texts(captured)

        with capture_output():
            shell.run_line_magic("cocalc", "start --projects {lab_ids} --out started")
        assert shell.user_ns["started"].ok

        with capture_output():
            shell.run_line_magic("cocalc", "status --projects {lab_ids}")
        status = shell.user_ns["_cocalc"]
        assert [row.project_id for row in status] == lab
        assert status.ok

    def test_interrupt_stores_rows(self, shell, lab):
        timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            with capture_output(), pytest.raises(FanoutInterrupted) as caught:
                shell.run_line_magic("cocalc", "exec --projects {lab_ids} -- sleep 30")
        finally:
            timer.cancel()
        stored = shell.user_ns["_cocalc"]
        assert stored is caught.value.result
        assert stored.interrupted
        assert [row.project_id for row in stored] == lab
        assert not stored.ok
