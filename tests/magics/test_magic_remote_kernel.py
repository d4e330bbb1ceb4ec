"""``--kernel``, ``%cocalc session`` and ``%cocalc kernels`` against real kernels.

The local server runs each ``system.jupyterExecute`` call on a real Jupyter
kernel, so these tests see what a CoCalc project's kernel produces.
"""

from __future__ import annotations

import importlib.util
import json
import re
import threading
import time

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from traitlets import TraitError

from cocalc_magics.magics.errors import CoCalcMagicError
from cocalc_magics.remote import RemoteKernelError, RemoteResult
from tests.magics.conftest import CANARY_KEY

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None

ALL_KINDS = """\
import sys
from IPython.display import HTML, JSON, Markdown, display
print("to stdout")
print("to stderr", file=sys.stderr)
display(HTML("<b>bold</b>"))
display(Markdown("*emphasis*"))
display(JSON({"answer": 42}))
6 * 7
"""


def remote_cell(shell, line: str, code: str):
    with capture_output() as captured:
        returned = shell.run_cell_magic("cocalc_exec", line, code)
    return returned, captured


def notices(captured) -> str:
    return "\n".join(o.data.get("text/plain", "") for o in captured.outputs)


@pytest.fixture
def kernel_shell(shell, on_local_server):
    """The shell connected to the running local project, sessions reset after."""
    with capture_output():
        shell.run_line_magic("cocalc", "start")
    yield shell
    for name in ("work", "cwd"):
        try:
            with capture_output():
                shell.run_line_magic("cocalc", f"session {name} --reset")
        except UsageError:
            # The test did not use this session.
            pass


class TestCell:
    def test_every_output_kind_shown_and_kept(self, kernel_shell):
        returned, captured = remote_cell(
            kernel_shell, "--kernel python3 --out every", ALL_KINDS
        )
        assert returned is None
        assert captured.stdout == "to stdout\n"
        assert captured.stderr == "to stderr\n"
        bundles = [output.data for output in captured.outputs]
        assert bundles[0]["text/html"] == "<b>bold</b>"
        assert bundles[1]["text/markdown"] == "*emphasis*"
        assert bundles[2]["application/json"] == {"answer": 42}
        assert bundles[3] == {"text/plain": "42"}

        result = kernel_shell.user_ns["every"]
        assert isinstance(result, RemoteResult)
        assert kernel_shell.user_ns["_cocalc"] is result
        assert len(result.items) >= 6
        assert all(isinstance(item, dict) for item in result.items)
        assert "to stdout" in result.text
        assert "42" in result.text

    def test_remote_error_fails_cell_with_remote_traceback(self, kernel_shell):
        code = "print('before')\ndef inner():\n    return missing_name\ninner()"
        with capture_output() as captured, pytest.raises(RemoteKernelError) as caught:
            kernel_shell.run_cell_magic("cocalc_exec", "--kernel python3", code)
        assert captured.stdout == "before\n"
        error = caught.value
        assert type(error).__name__ == "NameError"
        lines = error._render_traceback_()
        assert "remote python3 kernel" in lines[0]
        plain = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(lines))
        assert "return missing_name" in plain
        assert kernel_shell.user_ns["_cocalc"].ok is False

    def test_no_raise_prints_traceback_in_place(self, kernel_shell):
        _, captured = remote_cell(kernel_shell, "--kernel python3 --no-raise", "1 / 0")
        assert "ZeroDivisionError" in captured.stderr
        assert "remote python3 kernel" in captured.stderr
        assert kernel_shell.user_ns["_cocalc"].ok is False

    def test_raise_on_failure_off_continues(self, kernel_shell, magics):
        magics.raise_on_failure = False
        _, captured = remote_cell(kernel_shell, "--kernel python3", "1 / 0")
        assert "ZeroDivisionError" in captured.stderr

    def test_quiet_shows_nothing_but_stores(self, kernel_shell):
        _, captured = remote_cell(
            kernel_shell, "--kernel python3 --quiet --out silent", "print(1)\n2"
        )
        assert captured.stdout == ""
        assert captured.outputs == []
        assert kernel_shell.user_ns["silent"].stdout == "1\n"

    def test_line_form_sends_code_as_typed(self, kernel_shell):
        kernel_shell.user_ns["value"] = "local"
        with capture_output() as captured:
            returned = kernel_shell.run_line_magic(
                "cocalc", "exec --kernel python3 -- print({'value': 1}, {1, 2})"
            )
        assert returned is None
        assert captured.stdout == "{'value': 1} {1, 2}\n"

    def test_line_form_code_not_evaluated(self, kernel_shell):
        calls = []
        kernel_shell.user_ns["tick"] = lambda: calls.append(1) or 5
        with capture_output() as captured:
            kernel_shell.run_line_magic(
                "cocalc", "exec --kernel python3 -- tick = lambda: 7; print({tick()})"
            )
        assert calls == []
        assert captured.stdout == "{7}\n"

    def test_line_form_expands_options(self, kernel_shell):
        kernel_shell.user_ns["kernel_name"] = "python3"
        with capture_output() as captured:
            kernel_shell.run_line_magic(
                "cocalc", "exec --kernel {kernel_name} -- print(6 * 7)"
            )
        assert captured.stdout == "42\n"

    def test_path_sent_on_every_call(self, kernel_shell, on_local_server):
        home = on_local_server.data_dir / "projects" / on_local_server.project_id
        (home / "kernel-cwd" / "Daten").mkdir(parents=True, exist_ok=True)
        line = "--kernel python3 --session cwd --path kernel-cwd/Daten"
        for _ in range(2):
            _, captured = remote_cell(
                kernel_shell, line, "import os\nprint(os.getcwd())"
            )
            assert captured.stdout.rstrip().endswith("/kernel-cwd/Daten")

    @pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is not installed")
    def test_matplotlib_png(self, kernel_shell):
        code = (
            "import matplotlib\n"
            "matplotlib.use('module://matplotlib_inline.backend_inline')\n"
            "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()"
        )
        _, captured = remote_cell(kernel_shell, "--kernel python3", code)
        (image,) = [o.data for o in captured.outputs if "image/png" in o.data]
        import base64

        assert base64.b64decode(image["image/png"]).startswith(b"\x89PNG")


class TestLimits:
    def test_stream_capped_with_notice(self, kernel_shell, magics):
        magics.remote_max_stream_bytes = 2000
        code = "for i in range(3000):\n    print(f'line {i}')"
        _, captured = remote_cell(kernel_shell, "--kernel python3 --out long", code)
        assert len(captured.stdout.encode()) <= 2000
        assert "line 0\n" in captured.stdout
        assert "line 2999\n" in captured.stdout
        assert "omitted here" in captured.stderr
        assert "long.stdout" in captured.stderr
        assert "line 1500\n" in kernel_shell.user_ns["long"].stdout

    def test_large_display_withheld_with_notice(self, kernel_shell, magics):
        magics.remote_max_output_bytes = 1000
        code = "from IPython.display import HTML\nHTML('<p>' + 'x' * 5000 + '</p>')"
        _, captured = remote_cell(kernel_shell, "--kernel python3 --out big", code)
        frontend_text = json.dumps([o.data for o in captured.outputs])
        assert "x" * 5000 not in frontend_text
        assert "big.payload(0, 'text/html')" in frontend_text
        assert "x" * 5000 in json.dumps(kernel_shell.user_ns["big"].items)

    def test_negative_limit_refused(self, magics):
        with pytest.raises(TraitError, match="0 \\(no limit\\) or more"):
            magics.remote_max_displays = -1

    def test_timeout_sets_server_run_limit(self, kernel_shell):
        code = "import time\ntime.sleep(5)"
        with capture_output(), pytest.raises(RemoteKernelError) as caught:
            kernel_shell.run_cell_magic(
                "cocalc_exec", "--kernel python3 --timeout 1", code
            )
        assert type(caught.value).__name__ == "KeyboardInterrupt"
        assert "time limit per run" in "\n".join(caught.value._render_traceback_())


class TestSessions:
    def test_state_persists_only_in_a_session(self, kernel_shell):
        remote_cell(kernel_shell, "--kernel python3 --session work", "total = 40")
        _, captured = remote_cell(
            kernel_shell, "--kernel python3 --session work", "total + 2"
        )
        assert [o.data for o in captured.outputs] == [{"text/plain": "42"}]

        with pytest.raises(RemoteKernelError) as caught, capture_output():
            kernel_shell.run_cell_magic("cocalc_exec", "--kernel python3", "total")
        assert type(caught.value).__name__ == "NameError"

    def test_failed_input_not_replayed(self, kernel_shell):
        remote_cell(kernel_shell, "--kernel python3 --session work", "a = 1")
        with pytest.raises(RemoteKernelError), capture_output():
            kernel_shell.run_cell_magic(
                "cocalc_exec", "--kernel python3 --session work", "a = 2\n1 / 0"
            )
        _, captured = remote_cell(kernel_shell, "--kernel python3 --session work", "a")
        assert [o.data for o in captured.outputs] == [{"text/plain": "1"}]

    def test_show_and_reset(self, kernel_shell):
        remote_cell(kernel_shell, "--kernel python3 --session work", "b = 1")
        _, captured = remote_cell(
            kernel_shell, "--kernel python3 --session work", "import random\nprint(b)"
        )
        assert "replays this input" in captured.stderr

        with capture_output() as session_view:
            kernel_shell.run_line_magic("cocalc", "session work")
        text = notices(session_view)
        assert "2 inputs replayed on each call" in text
        assert "Replay estimate" in text
        assert "[1] b = 1" in text
        assert "draw random numbers" in text
        assert (
            "<li><code>[1] b = 1</code></li>"
            in session_view.outputs[0].data["text/html"]
        )

        with capture_output() as listed:
            kernel_shell.run_line_magic("cocalc", "session")
        assert "work" in notices(listed)

        with capture_output() as reset:
            kernel_shell.run_line_magic("cocalc", "session work --reset")
        assert "reset" in notices(reset)
        with pytest.raises(RemoteKernelError), capture_output():
            kernel_shell.run_cell_magic(
                "cocalc_exec", "--kernel python3 --session work", "b"
            )

    def test_unknown_session_named_in_error(self, kernel_shell):
        with pytest.raises(UsageError, match="no session 'gone'"):
            kernel_shell.run_line_magic("cocalc", "session gone")
        with pytest.raises(UsageError, match="no session 'gone'"):
            kernel_shell.run_line_magic("cocalc", "session gone --reset")

    def test_failed_call_leaves_session_unchanged(self, kernel_shell):
        # The second call's body (history plus input) is over CoCalc's 1 MB limit,
        # so the client refuses to send it.
        big = "x = '" + "a" * 600_000 + "'"
        remote_cell(kernel_shell, "--kernel python3 --session work", big)
        with pytest.raises(CoCalcMagicError, match="jupyter execute"), capture_output():
            kernel_shell.run_cell_magic(
                "cocalc_exec", "--kernel python3 --session work", big
            )
        _, captured = remote_cell(
            kernel_shell, "--kernel python3 --session work", "len(x)"
        )
        assert [o.data for o in captured.outputs] == [{"text/plain": "600000"}]


class TestStoppedProject:
    def test_kernel_cell_starts_project_visibly(self, kernel_shell):
        with capture_output() as captured:
            kernel_shell.run_line_magic("cocalc", "stop")
        assert "stopped" in notices(captured)

        _, captured = remote_cell(kernel_shell, "--kernel python3", "print('back')")
        assert captured.stdout == "back\n"
        assert "started in" in notices(captured)


class TestServerErrors:
    def test_unknown_kernel_is_short(self, kernel_shell, on_local_server):
        with pytest.raises(CoCalcMagicError) as caught, capture_output():
            kernel_shell.run_cell_magic("cocalc_exec", "--kernel nosuch", "1 + 1")
        error = caught.value
        text = "\n".join(error._render_traceback_())
        assert len(text.splitlines()) <= 10
        assert 'No spec available for kernel "nosuch"' in text
        assert "jupyter execute (kernel nosuch)" in text
        assert on_local_server.project_id in text
        assert "%cocalc kernels" in text
        assert "File " not in text

    def test_bash_options_refused_with_kernel(self, kernel_shell):
        for line in ("--cwd /tmp", "--env A=1", "--max-output 10"):
            with pytest.raises(UsageError, match="does not apply with --kernel"):
                kernel_shell.run_cell_magic(
                    "cocalc_exec", f"--kernel python3 {line}", "1"
                )

    def test_session_needs_kernel(self, kernel_shell):
        with pytest.raises(UsageError, match="--session needs --kernel"):
            kernel_shell.run_cell_magic("cocalc_exec", "--session work", "ls")


class TestKernels:
    def test_lists_specs_and_running(self, kernel_shell, on_local_server):
        remote_cell(kernel_shell, "--kernel python3", "1")
        with capture_output() as captured:
            kernel_shell.run_line_magic("cocalc", "kernels")
        text = notices(captured)
        assert "Kernels installed" in text
        assert "python3" in text
        assert "Kernels running" in text
        with capture_output() as captured:
            kernel_shell.run_line_magic("cocalc", "kernels --running")
        assert "Kernels installed" not in notices(captured)

    def test_stop_a_running_kernel(self, kernel_shell, magics, on_local_server):
        failures = []

        def run_slow():
            try:
                magics.session.connection.jupyter_execute(
                    "import time\ntime.sleep(30)", timeout_ms=60_000
                )
            except Exception as error:  # noqa: BLE001 - recorded for the assert
                failures.append(error)

        worker = threading.Thread(target=run_slow)
        worker.start()
        stopped = []
        # Spare kernels of the pool are listed too, and the busy kernel may show
        # up after them: stop whatever runs until the slow call ends. It would
        # end by itself only at the server's 30 s limit, without an exception.
        deadline = time.monotonic() + 20
        while worker.is_alive() and time.monotonic() < deadline:
            for kernel in magics.session.connection.running_kernels():
                with capture_output() as captured:
                    kernel_shell.run_line_magic(
                        "cocalc", f"kernels --stop {kernel.pid}"
                    )
                assert f"Kernel {kernel.pid} of project" in notices(captured)
                stopped.append(kernel.pid)
            time.sleep(0.3)
        worker.join(timeout=10)
        assert stopped
        assert not worker.is_alive()
        assert failures, "the slow call ended without its kernel being stopped"

        with pytest.raises(CoCalcMagicError, match="no running kernel with pid 1"):
            kernel_shell.run_line_magic("cocalc", "kernels --stop 1")


class TestDryRun:
    def test_exec_dry_run_is_the_body_sent(self, shell, fake):
        line = "--timeout 20 --path work --env A=1 --compute-server 2"
        with capture_output() as captured:
            shell.run_cell_magic("cocalc_exec", f"--dry-run {line}", "make\n")
        text = captured.outputs[0].data["text/plain"]
        described = json.loads(text[text.index("{") :])
        assert fake.requests == []

        with capture_output():
            shell.run_cell_magic("cocalc_exec", line, "make\n")
        sent = fake.requests_for("system.exec")[0]
        assert described["json"] == sent.json

    def test_kernel_dry_run_is_the_body_sent(self, shell, fake):
        fake.script("system.jupyterExecute", [{"name": "stdout", "text": "1\n"}])
        with capture_output():
            shell.run_cell_magic("cocalc_exec", "--kernel python3 --session s", "x=1")
        line = "--kernel python3 --session s --path sub --timeout 5"
        with capture_output() as captured:
            shell.run_cell_magic("cocalc_exec", f"--dry-run {line}", "print(x)")
        text = captured.outputs[0].data["text/plain"]
        assert CANARY_KEY not in text
        described = json.loads(text[text.index("{") :])
        assert described["json"]["args"][0]["history"] == ["x=1"]

        fake.clear()
        fake.script("system.jupyterExecute", [{"name": "stdout", "text": "1\n"}])
        with capture_output():
            shell.run_cell_magic("cocalc_exec", line, "print(x)")
        (sent,) = fake.requests_for("system.jupyterExecute")
        assert described["json"] == sent.json
        from cocalc_magics.remote import session_store

        for session in session_store():
            session.reset()
