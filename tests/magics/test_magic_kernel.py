"""The magics in a real Jupyter kernel, executed and saved with nbclient.

The kernel inherits the environment that the ``fake`` fixture sets, so it talks
to the fake CoCalc server of the test process.

These check what a notebook really stores: stream outputs, error outputs, the
size of what reaches the frontend, and that the API key appears nowhere.
"""

from __future__ import annotations

import json

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from tests.magics.conftest import CANARY_KEY, job_responder
from tests.support.fake_server import Reply


def run_notebook(sources: list[str], path, *, raises=()) -> nbformat.NotebookNode:
    """Execute cells in a fresh kernel; cells whose index is in ``raises`` may fail."""
    cells = []
    for index, source in enumerate(sources):
        cell = new_code_cell(source)
        if index in raises:
            cell.metadata["tags"] = ["raises-exception"]
        cells.append(cell)
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "language": "python",
        "display_name": "Python 3",
    }
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    nbformat.write(notebook, path)
    return notebook


def outputs_of(cell, output_type):
    return [output for output in cell.outputs if output.output_type == output_type]


def test_streams_and_errors_in_notebook(fake, tmp_path):
    def final_for(command):
        if "fail" in command:
            return {
                "stdout": "after\n",
                "stderr": "grep: haystack.txt\n",
                "exit_code": 2,
            }
        return {
            "stdout": "\x1b[31mred\x1b[0m <b>x</b>\n",
            "stderr": "warn\n",
            "exit_code": 0,
        }

    fake.on("system.exec", job_responder(final_for))
    notebook = run_notebook(
        [
            "%load_ext cocalc_magics",
            "%%cocalc_exec\nprint colours",
            "%%cocalc_exec\nfail",
            "ran_after_failure = True",
        ],
        tmp_path / "streams.ipynb",
        raises={2},
    )
    colours, failing = notebook.cells[1], notebook.cells[2]
    streams = {o.name: o.text for o in outputs_of(colours, "stream")}
    assert streams == {"stdout": "\x1b[31mred\x1b[0m <b>x</b>\n", "stderr": "warn\n"}
    assert not [o for o in colours.outputs if "text/html" in o.get("data", {})]

    streams = {o.name: o.text for o in outputs_of(failing, "stream")}
    assert streams == {"stdout": "after\n", "stderr": "grep: haystack.txt\n"}
    (error,) = outputs_of(failing, "error")
    assert error.ename == "CommandFailedError"
    assert len(error.traceback) <= 3
    assert "code 2" in error.traceback[0]
    assert not any("File " in line for line in error.traceback)


def test_key_never_saved(fake, tmp_path):
    def final_for(command):
        if "unauthorized" in command:
            return Reply.json({"error": "invalid api key"}, status=401)
        return {"stdout": "", "stderr": "", "exit_code": 0}

    fake.on("system.exec", job_responder(final_for))
    path = tmp_path / "secrets.ipynb"
    run_notebook(
        [
            "%load_ext cocalc_magics",
            "%cocalc config",
            "%cocalc ping",
            "%cocalc status",
            "%cocalc exec echo hi",
            "%cocalc exec --dry-run -- echo hi",
            "%cocalc doctor",
            "%config CoCalcMagics",
            (
                "m = get_ipython().magics_manager.registry['CoCalcMagics']\n"
                "print(repr(m.session.connection))\n"
                "print(str(m.session.connection.settings))\n"
                "m.session.connection"
            ),
            "%cocalc exec unauthorized",
        ],
        path,
        raises={9},
    )
    saved = path.read_text(encoding="utf-8")
    assert CANARY_KEY not in saved
    assert "sk-…" in saved
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    (error,) = outputs_of(notebook.cells[9], "error")
    assert "401" in json.dumps(error) or "authentic" in json.dumps(error).lower()


def test_huge_output_capped(fake, tmp_path):
    lines = "".join(f"log line {i}\n" for i in range(2_000_000))

    fake.on(
        "system.exec",
        job_responder(lambda command: {"stdout": lines, "stderr": "", "exit_code": 0}),
    )
    notebook = run_notebook(
        [
            "%load_ext cocalc_magics",
            "%cocalc exec --out big -- cat big.log",
            "import time; started = time.monotonic()",
            "print(len(big.stdout), time.monotonic() - started < 2)",
        ],
        tmp_path / "big.ipynb",
    )
    sent = sum(len(json.dumps(output)) for output in notebook.cells[1].outputs)
    assert sent < 1_100_000
    text = "".join(o.text for o in outputs_of(notebook.cells[1], "stream"))
    assert "log line 0\n" in text
    assert "log line 1999999\n" in text
    assert "lines (" in text
    assert "omitted" in text
    shown = json.dumps(notebook.cells[1].outputs)
    assert "big.stdout" in shown
    assert notebook.cells[3].outputs[0].text.strip() == f"{len(lines)} True"


def test_c_locale_kernel(fake, tmp_path, monkeypatch):
    text = "Grüße, 你好, Ωμέγα, 🚀 \ufffd\n"
    monkeypatch.setenv("LANG", "C")
    monkeypatch.setenv("LC_ALL", "C")
    monkeypatch.delenv("PYTHONIOENCODING", raising=False)

    fake.on(
        "system.exec",
        job_responder(lambda command: {"stdout": text, "stderr": "", "exit_code": 0}),
    )
    notebook = run_notebook(
        [
            "%load_ext cocalc_magics",
            '%%cocalc_exec\necho "Grüße, 你好, Ωμέγα, 🚀"',
        ],
        tmp_path / "c-locale.ipynb",
    )
    (stream,) = outputs_of(notebook.cells[1], "stream")
    assert stream.text == text
    request = fake.requests_for("system.exec")[0]
    assert request.args[0]["command"] == 'echo "Grüße, 你好, Ωμέγα, 🚀"\n'
