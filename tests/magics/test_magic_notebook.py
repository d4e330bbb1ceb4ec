"""The quickstart notebook, validated with nbval and run by the quickstart command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat

from cocalc_magics.quickstart import find_notebook
from tests.support.notebooks import assert_nbval_passed, run_nbval

REPOSITORY = Path(__file__).resolve().parents[2]
NOTEBOOK = REPOSITORY / "notebooks" / "quickstart.ipynb"


def test_notebook_passes_nbval(tmp_path):
    assert_nbval_passed(run_nbval(NOTEBOOK, tmp_path))


def test_notebook_covers_the_tour():
    sources = "\n".join(
        cell.source
        for cell in nbformat.read(NOTEBOOK, as_version=4).cells
        if cell.cell_type == "code"
    )
    for expected in (
        "%load_ext cocalc_magics",
        "%cocalc local",
        "%cocalc ping",
        "%%cocalc_exec",
        "--no-raise",
        "%cocalc status",
        "%cocalc quotas",
        "%cocalc doctor",
    ):
        assert expected in sources


def test_saved_notebook_has_no_full_key():
    text = NOTEBOOK.read_text(encoding="utf-8")
    assert not re.search(r"sk-[A-Za-z0-9_]{5,}", text)


def test_quickstart_finds_tested_notebook():
    assert find_notebook() == NOTEBOOK


def test_quickstart_command(tmp_path):
    # A folder that does not exist yet, and a timeout in fractional seconds.
    output = tmp_path / "new" / "folder" / "executed.ipynb"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cocalc_magics.cli",
            "quickstart",
            "--output",
            str(output),
            "--data-dir",
            str(tmp_path / "data"),
            "--timeout",
            "90.5",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert f"Executed notebook: {output}" in result.stdout
    assert "[failed as expected] %%cocalc_exec" in result.stdout
    assert "FAILED" not in result.stdout
    assert output.exists()
    nbformat.validate(nbformat.read(output, as_version=4))
    # The server was stopped: its connection record is gone or names a dead pid.
    from cocalc_magics.server.launch import live_server

    assert live_server(tmp_path / "data") is None


def test_quickstart_unwritable_output(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cocalc_magics.cli",
            "quickstart",
            "--output",
            str(blocker / "executed.ipynb"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "cannot create the folder of --output" in result.stderr
    assert "Traceback" not in result.stderr


def test_quickstart_rejects_bad_timeout():
    result = subprocess.run(
        [sys.executable, "-m", "cocalc_magics.cli", "quickstart", "--timeout", "0"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "'0' is not a positive number of seconds" in result.stderr
