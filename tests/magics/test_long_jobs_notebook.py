"""The long-jobs notebook, validated with nbval against its own local server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
NOTEBOOK = REPOSITORY / "notebooks" / "long-jobs.ipynb"
SANITIZE = REPOSITORY / "notebooks" / "sanitize.cfg"


@pytest.fixture
def local_dir(tmp_path):
    """An isolated data dir for the notebook's local server, stopped afterwards."""
    from cocalc_magics.server import stop_local_server

    data_dir = tmp_path / "local-server"
    yield data_dir
    stop_local_server(data_dir)


def test_long_jobs_notebook_passes_nbval(local_dir, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval",
            str(NOTEBOOK),
            "--nbval-sanitize-with",
            str(SANITIZE),
            "--nbval-current-env",
            "-p",
            "no:cacheprovider",
            "-q",
            "--rootdir",
            str(tmp_path),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=240,
        env={
            **os.environ,
            "COCALC_MAGICS_LOCAL_DIR": str(local_dir),
            "COCALC_MAGICS_DATA_DIR": str(tmp_path / "data"),
        },
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
    assert " failed" not in result.stdout


def test_long_jobs_notebook_covers_the_tour():
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    sources = "\n".join(cell.source for cell in notebook.cells)
    for phrase in ("%%cocalc_exec", "--bg", "%cocalc jobs", "--stats", "--kill"):
        assert phrase in sources
