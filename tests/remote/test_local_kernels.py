"""run_remote_cell against the local server, which runs real Jupyter kernels."""

from __future__ import annotations

import base64
import importlib.util

import nbformat
import pytest
from IPython.utils.capture import capture_output
from nbclient import NotebookClient

from cocalc_magics.api import Connection
from cocalc_magics.remote import RemoteKernelError, SessionStore, run_remote_cell
from tests.support.local_server import local_server  # noqa: F401 - a fixture

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


@pytest.fixture
def connection(local_server):  # noqa: F811 - the fixture imported above
    with Connection(
        host=local_server.url,
        api_key=local_server.api_key,
        project_id=local_server.project_id,
    ) as conn:
        yield conn


def run(connection, code, store, **options):
    with capture_output() as captured:
        result = run_remote_cell(connection, code, sessions=store, **options)
    return result, captured


def test_session_state_survives_calls(shell, connection):
    store = SessionStore()
    run(connection, "a = 41", store, session="work")
    result, captured = run(
        connection, "print('sum', a + 1)\na * 2", store, session="work"
    )

    assert captured.stdout == "sum 42\n"
    assert [output.data for output in captured.outputs] == [{"text/plain": "82"}]
    assert result.history_length == 1


def test_without_session_state_is_gone(shell, connection):
    store = SessionStore()
    run(connection, "a = 41", store)
    with pytest.raises(RemoteKernelError) as caught:
        run(connection, "a", store)
    assert type(caught.value).__name__ == "NameError"
    assert "name 'a' is not defined" in str(caught.value)


def test_path_sets_working_directory(shell, connection, local_server):  # noqa: F811
    home = local_server.data_dir / "projects" / local_server.project_id
    (home / "remote-tests" / "Données").mkdir(parents=True, exist_ok=True)
    store = SessionStore()
    code = "import os\nprint(os.getcwd())"
    for _ in range(2):
        _, captured = run(
            connection, code, store, session="cwd", path="remote-tests/Données"
        )
        assert captured.stdout.rstrip("\n").endswith("/remote-tests/Données")


def test_remote_traceback_is_kept(shell, connection):
    with pytest.raises(RemoteKernelError) as caught:
        run(connection, "def f():\n    return 1 / 0\nf()", SessionStore())

    error = caught.value
    assert type(error).__name__ == "ZeroDivisionError"
    assert str(error) == "division by zero"
    lines = error._render_traceback_()
    assert "remote python3 kernel" in lines[0]
    assert any("\x1b[" in line for line in lines[1:])
    assert "return 1 / 0" in error.result.text


def test_clear_output_drops_earlier_text(shell, connection):
    code = (
        "from IPython.display import clear_output\n"
        "print('old')\nclear_output()\nprint('new')"
    )
    result, captured = run(connection, code, SessionStore())
    assert captured.stdout == "new\n"
    assert "old" not in result.stdout


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is not installed")
def test_matplotlib_figure_shown_as_image(shell, connection):
    code = (
        "import matplotlib\n"
        "matplotlib.use('module://matplotlib_inline.backend_inline')\n"
        "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()"
    )
    result, captured = run(connection, code, SessionStore())
    images = [output.data for output in captured.outputs if "image/png" in output.data]
    assert len(images) == 1
    assert base64.b64decode(images[0]["image/png"]).startswith(b"\x89PNG")
    assert images[0]["text/plain"].startswith("<Figure size")
    assert result.ok


def test_notebook_cells_render_remote_outputs(local_server, tmp_path):  # noqa: F811
    setup = (
        "from cocalc_magics.api import Connection\n"
        "from cocalc_magics.remote import run_remote_cell\n"
        f"connection = Connection(host={local_server.url!r}, "
        f"api_key={local_server.api_key!r}, project_id={local_server.project_id!r})\n"
    )
    call = (
        "run_remote_cell(connection, {code}, session='nb', out='{out}', "
        "namespace=globals())"
    )
    cells = [
        setup,
        call.format(code="'x = 6'", out="first"),
        call.format(code="'print(x * 7)\\nx * 7'", out="second"),
        call.format(code="'undefined_name'", out="third"),
        "print(second.stdout, third.ok)",
    ]
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    NotebookClient(
        notebook, kernel_name="python3", timeout=120, allow_errors=True
    ).execute()
    path = tmp_path / "remote.ipynb"
    nbformat.write(notebook, path)
    saved = nbformat.read(path, as_version=4)
    nbformat.validate(saved)

    second = saved.cells[2].outputs
    assert [output.output_type for output in second[:2]] == ["stream", "display_data"]
    assert second[0].text == "42\n"
    assert second[1].data == {"text/plain": "42"}
    error = saved.cells[3].outputs[-1]
    assert error.output_type == "error"
    assert error.ename == "NameError"
    assert saved.cells[4].outputs[0].text == "42\n False\n"
