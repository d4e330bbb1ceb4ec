"""Remote kernel cells in a real notebook kernel, executed and saved with nbclient.

These check what a notebook stores: that a remote cell's outputs equal those of
the same code run locally, that sessions carry state across cells, that a
server error stays short, and that very long output is capped. The last test
validates ``notebooks/remote-jupyter.ipynb`` with nbval.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from tests.support.notebooks import assert_nbval_passed, run_nbval

REPOSITORY = Path(__file__).resolve().parents[2]
NOTEBOOK = REPOSITORY / "notebooks" / "remote-jupyter.ipynb"

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None

# The first cell of every notebook. Starting the project there keeps the notice
# of a start out of the cells under test.
SETUP = "%load_ext cocalc_magics\n%cocalc start"

# Code run both locally and on the remote kernel, whose outputs must be equal.
SAME_EVERYWHERE = [
    "print('out 1')\nimport sys\nprint('err', file=sys.stderr)\nprint('out 2')",
    (
        "from IPython.display import HTML, Markdown, Latex, SVG, JSON, display\n"
        "display(HTML('<i>html</i>'), Markdown('**md**'), Latex(r'$x^2$'))\n"
        'display(SVG(\'<svg xmlns="http://www.w3.org/2000/svg" width="4" '
        'height="4"></svg>\'))\n'
        "display(JSON({'a': [1, 2]}))"
    ),
    "{'grüße': '你好 🚀', 'n': 42}",
    (
        "from IPython.display import display\n"
        "display({'text/plain': 'raw', 'text/html': '<p>raw</p>'}, raw=True, "
        "metadata={'text/html': {'isolated': True}})\n'last value'"
    ),
    (
        "from IPython.display import clear_output\nprint('gone')\nclear_output()\n"
        "print('kept')"
    ),
]

MATPLOTLIB = (
    "import matplotlib\n"
    "matplotlib.use('module://matplotlib_inline.backend_inline')\n"
    "import matplotlib.pyplot as plt\n"
    "plt.plot([1, 3, 2])\nplt.show()"
)


@pytest.fixture
def server_environment(local_server, monkeypatch, tmp_path):
    """Point a notebook kernel's magics at the session's local server."""
    monkeypatch.setenv("COCALC_HOST", local_server.url)
    monkeypatch.setenv("COCALC_API_KEY", local_server.api_key)
    monkeypatch.setenv("COCALC_PROJECT_ID", local_server.project_id)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return local_server


def run_notebook(sources: list[str], path: Path, *, raises=()) -> nbformat.NotebookNode:
    """Execute cells in a fresh kernel, save and reload the notebook."""
    cells = []
    for index, source in enumerate(sources):
        cell = new_code_cell(source)
        if index in raises:
            cell.metadata["tags"] = ["raises-exception"]
        cells.append(cell)
    notebook = new_notebook(cells=cells)
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    nbformat.write(notebook, path)
    saved = nbformat.read(path, as_version=4)
    nbformat.validate(saved)
    return saved


def comparable(outputs) -> list[dict]:
    """Outputs as the frontend shows them: a result and a display look alike."""
    frontend_outputs = []
    for output in outputs:
        output = dict(output)
        output.pop("execution_count", None)
        if output["output_type"] == "execute_result":
            output["output_type"] = "display_data"
        frontend_outputs.append(output)
    return frontend_outputs


def test_remote_outputs_equal_local_outputs(server_environment, tmp_path):
    codes = SAME_EVERYWHERE + ([MATPLOTLIB] if HAS_MATPLOTLIB else [])
    sources = [SETUP]
    for code in codes:
        sources += [code, f"%%cocalc_exec --kernel python3\n{code}"]
    notebook = run_notebook(sources, tmp_path / "same.ipynb")

    for index, code in enumerate(codes):
        local = notebook.cells[1 + 2 * index].outputs
        remote = notebook.cells[2 + 2 * index].outputs
        assert comparable(remote) == comparable(local), code


def test_remote_error_output_like_local(server_environment, tmp_path):
    code = "def f():\n    return {}['missing']\nf()"
    notebook = run_notebook(
        [SETUP, code, f"%%cocalc_exec --kernel python3\n{code}"],
        tmp_path / "error.ipynb",
        raises={1, 2},
    )
    (local,) = notebook.cells[1].outputs
    (remote,) = notebook.cells[2].outputs
    assert remote.output_type == local.output_type == "error"
    assert (remote.ename, remote.evalue) == (local.ename, local.evalue)
    assert "remote python3 kernel" in remote.traceback[0]
    assert remote.traceback[-1] == local.traceback[-1]


def test_sessions_and_errors_across_cells(server_environment, tmp_path):
    sources = [
        SETUP,
        "%%cocalc_exec --kernel python3 --session nb\nimport math\nx = 6",
        "%%cocalc_exec --kernel python3 --session nb\nx * 7",
        "%%cocalc_exec --kernel python3 --session nb\ny = x / 0",
        "%cocalc session nb",
        "%%cocalc_exec --kernel python3 --session nb --out third\nmath.sqrt(x * 6)",
        "print(third.items, repr(third.text))",
        "%cocalc session nb --reset",
        "%%cocalc_exec --kernel python3 --session nb\nx",
        "%%cocalc_exec --kernel python3\nx",
        "%%cocalc_exec --kernel nosuch\n1",
    ]
    notebook = run_notebook(sources, tmp_path / "sessions.ipynb", raises={3, 8, 9, 10})
    cells = notebook.cells

    assert cells[2].outputs[0].data == {"text/plain": "42"}
    assert cells[3].outputs[-1].ename == "ZeroDivisionError"
    session_text = cells[4].outputs[0].data["text/plain"]
    counts = "2 inputs replayed on each call, 3 calls so far (1 with an error)"
    assert counts in session_text
    assert cells[5].outputs[0].data == {"text/plain": "6.0"}
    assert cells[6].outputs[0].text == ("[{'data': {'text/plain': '6.0'}}] '6.0\\n'\n")
    assert "reset" in cells[7].outputs[0].data["text/plain"]
    for cell in cells[8:10]:
        assert cell.outputs[-1].ename == "NameError"

    error = cells[10].outputs[-1]
    text = "\n".join(error.traceback)
    assert len(text.splitlines()) <= 10
    assert 'No spec available for kernel "nosuch"' in text
    assert "jupyter execute (kernel nosuch)" in text
    assert server_environment.project_id in text
    assert "File " not in text
    assert "site-packages" not in text


def test_very_long_output_capped_in_notebook(server_environment, tmp_path):
    sources = [
        SETUP,
        (
            "%%cocalc_exec --kernel python3 --out long\n"
            "for i in range(50_000):\n    print(i, flush=True)"
        ),
        "print(len(long.items) > 10_000, long.stdout.startswith('0\\n1\\n'))",
    ]
    notebook = run_notebook(sources, tmp_path / "long.ipynb")
    outputs = notebook.cells[1].outputs
    streamed = "".join(o.text for o in outputs if o.output_type == "stream")
    assert len(outputs) <= 10
    assert len(streamed.encode()) <= 1_000_000 + 2_000
    assert streamed.startswith("0\n1\n")
    assert "output omitted here" in streamed or "truncated" in streamed
    assert notebook.cells[2].outputs[0].text == "True True\n"
    # The whole notebook stays far below what 50,000 separate outputs would take.
    assert (tmp_path / "long.ipynb").stat().st_size < 1_500_000


def test_notebook_passes_nbval(tmp_path):
    assert_nbval_passed(run_nbval(NOTEBOOK, tmp_path))


def test_notebook_covers_the_feature():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    sources = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    for expected in (
        "%%cocalc_exec --kernel python3",
        "--session",
        "%cocalc session",
        "--reset",
        "%cocalc kernels",
        "--no-raise",
        "--out",
        "remote_max_stream_bytes",
    ):
        assert expected in sources
    text = NOTEBOOK.read_text(encoding="utf-8")
    assert not re.search(r"sk-[A-Za-z0-9_]{5,}", text)
    # Saved outputs are part of what nbval compares, so they must be there.
    assert any(c.get("outputs") for c in notebook.cells if c.cell_type == "code")
    json.loads(text)
