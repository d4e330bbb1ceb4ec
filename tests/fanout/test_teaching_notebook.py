"""The instructor's notebook ``notebooks/teaching.ipynb`` passes nbval.

nbval runs in a child pytest, with ``COCALC_MAGICS_LOCAL_DIR`` pointing at a
temporary directory, so the notebook's local server and projects are its own. The
notebook leaves that server running, as a user's session would; the test stops it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cocalc_magics.server import stop_local_server

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "teaching.ipynb"


def test_teaching_notebook_passes_nbval(tmp_path):
    data_dir = tmp_path / "local-server"
    env = {**os.environ, "COCALC_MAGICS_LOCAL_DIR": str(data_dir)}
    try:
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "--nbval",
                str(NOTEBOOK),
                "-q",
                "-p",
                "no:cacheprovider",
            ],
            check=False,
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        stop_local_server(data_dir)

    assert completed.returncode == 0, (
        completed.stdout[-3000:] + completed.stderr[-2000:]
    )
    assert " passed" in completed.stdout
    assert " failed" not in completed.stdout
