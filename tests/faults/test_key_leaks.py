"""The canary key never shows up in tracebacks with locals, reprs or notebooks.

Tracebacks are the dangerous place: a traceback rendered with local variables
(``traceback.TracebackException(..., capture_locals=True)``, IPython's
``%xmode Verbose``, or ``CoCalcMagics.show_tracebacks``) prints the repr of every
variable of every frame, through our code, requests and urllib3.
"""

from __future__ import annotations

import json
import os
import socket

import nbformat
import pytest

from tests.faults.conftest import (
    _SCAN,
    CANARY_KEY,
    PROJECT_ID,
    render_with_locals,
    run_cell,
)
from tests.support.fake_server import Reply


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def client(url: str, **options):
    from cocalc_magics.api import Connection

    return Connection(host=url, api_key=CANARY_KEY, project_id=PROJECT_ID, **options)


FAULTS = {
    "html page": Reply.html(502, "<html><body>Bad Gateway</body></html>"),
    "broken json": Reply(body=b"{not json"),
    "cut off": Reply.json({"now": 1, "pad": "x" * 500}, cut_after=20),
    "dropped": Reply.dropped(),
    "rejected key": Reply.error("must sign in as project or account"),
    "slow": Reply.json({"now": 1}, delay=3.0),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_client_error_traceback_locals(fake, fault):
    from cocalc_magics.api import CoCalcError

    fake.script("system.ping", FAULTS[fault])
    connection = client(fake.url, cold_start_margin=0.5)
    with pytest.raises(CoCalcError) as raised:
        connection.project_call("system.ping", [], timeout_ms=1000)
    rendered = render_with_locals(raised.value)
    assert "Traceback" in rendered
    assert CANARY_KEY not in rendered
    assert CANARY_KEY not in repr(raised.value) + str(raised.value)
    assert CANARY_KEY not in str(getattr(raised.value, "hint", ""))


def test_refused_traceback_locals():
    from cocalc_magics.api import ConnectionFailedError

    connection = client(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ConnectionFailedError) as raised:
        connection.ping()
    _SCAN.add_exception("refused", raised.value)
    assert CANARY_KEY not in render_with_locals(raised.value)


def test_large_body_traceback_locals(fake):
    from cocalc_magics.api import CoCalcError

    with pytest.raises(CoCalcError) as raised:
        client(fake.url).exec("echo " + "y" * (1024 * 1024 + 1))
    assert CANARY_KEY not in render_with_locals(raised.value)
    assert fake.requests == []


def test_reprs_and_dry_run_mask_the_key(fake):
    from cocalc_magics.api import resolve_settings

    connection = client(fake.url)
    described = connection.describe_request("project", "system.ping", [])
    settings = resolve_settings(fake.url, CANARY_KEY, PROJECT_ID)
    for shown in (
        repr(connection),
        str(connection),
        repr(settings),
        str(settings),
        "\n".join(settings.describe()),
        json.dumps(described),
        repr(connection.ping()),
        repr(vars(connection)),
    ):
        assert CANARY_KEY not in shown, shown


@pytest.mark.parametrize("xmode", ["Verbose", "Context"])
def test_magic_failure_full_traceback(shell, fake, xmode):
    fake.script("system.exec", Reply.html(504, "<html>Gateway Time-out</html>"))
    shell.run_line_magic("config", "CoCalcMagics.show_tracebacks = True")
    shell.run_line_magic("xmode", xmode)
    run = run_cell(shell, "%cocalc exec echo hi")
    assert run.error is not None
    assert "Traceback" in run.stdout or "Traceback" in run.stderr
    assert CANARY_KEY not in run.stdout + run.stderr
    assert CANARY_KEY not in render_with_locals(run.error)


def test_refused_connection_verbose_traceback(shell, monkeypatch):
    monkeypatch.setenv("COCALC_HOST", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("COCALC_API_KEY", CANARY_KEY)
    monkeypatch.setenv("COCALC_PROJECT_ID", PROJECT_ID)
    shell.run_line_magic("config", "CoCalcMagics.show_tracebacks = True")
    shell.run_line_magic("xmode", "Verbose")
    run = run_cell(shell, "%cocalc ping")
    assert run.error is not None
    assert CANARY_KEY not in run.stdout + run.stderr


def test_config_and_doctor_mask_key(shell, fake):
    for line in ("%cocalc config", "%cocalc doctor", "%cocalc connect"):
        run = run_cell(shell, line)
        assert CANARY_KEY not in run.text
    assert "sk-" in run_cell(shell, "%cocalc config").text


def test_saved_notebook_has_no_key(fake, tmp_path):
    """Run a notebook in a real kernel against the fake site; save and read it."""
    from nbclient import NotebookClient

    fake.script("system.exec", Reply.html(502, "<html>Bad Gateway</html>"))
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("%load_ext cocalc_magics"),
        nbformat.v4.new_code_cell("%cocalc config"),
        nbformat.v4.new_code_cell("%cocalc ping"),
        nbformat.v4.new_code_cell("%cocalc exec echo hi"),
        nbformat.v4.new_code_cell(
            "%config CoCalcMagics.show_tracebacks = True\n%xmode Verbose"
        ),
        nbformat.v4.new_code_cell("%cocalc exec echo hi"),
        nbformat.v4.new_code_cell("import logging; logging.basicConfig(level=10)"),
        nbformat.v4.new_code_cell("%cocalc ping"),
    ]
    environment = {
        **os.environ,
        "COCALC_HOST": fake.url,
        "COCALC_API_KEY": CANARY_KEY,
        "COCALC_PROJECT_ID": PROJECT_ID,
    }
    runner = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    with _environment(environment):
        runner.execute()
    saved = tmp_path / "saved.ipynb"
    nbformat.write(notebook, saved)
    _SCAN.roots.append(tmp_path)

    text = saved.read_text()
    assert "HTTP 502" in text
    assert "sk-" in text  # the masked key shown by %cocalc config
    assert CANARY_KEY not in text


class _environment:
    """Set os.environ for a kernel started inside the block; restore it after."""

    def __init__(self, values: dict[str, str]):
        self.values = values

    def __enter__(self):
        self.saved = dict(os.environ)
        os.environ.update(self.values)

    def __exit__(self, *exc_info):
        os.environ.clear()
        os.environ.update(self.saved)


@pytest.mark.parametrize("xmode", ["Verbose", "Context"])
def test_ctrl_c_during_request_traceback(shell, fake, xmode):
    # Ctrl-C lands inside requests and urllib3, whose frames hold the headers.
    from tests.faults.test_magic_faults import interrupt_after

    fake.script("system.ping", Reply.json({"now": 1}, delay=5.0))
    shell.run_line_magic("xmode", xmode)
    interrupt_after(1.0)
    run = run_cell(shell, "%cocalc ping")
    assert isinstance(run.error, KeyboardInterrupt)
    assert CANARY_KEY not in run.stdout + run.stderr
    assert CANARY_KEY not in render_with_locals(run.error)
