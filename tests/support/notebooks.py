"""Validate a repository notebook with nbval against its own local server.

nbval runs in a child pytest, so the notebook gets a real kernel of its own. The
kernel's ``COCALC_MAGICS_LOCAL_DIR`` and ``COCALC_MAGICS_DATA_DIR`` point into the
test's temporary folder, so the notebook's local server, projects and job ledger
never touch the user's own, and the server is stopped afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPOSITORY / "notebooks"
SANITIZE = NOTEBOOKS / "sanitize.cfg"


def run_nbval(
    notebook: Path, tmp_path: Path, *, timeout: float = 240
) -> subprocess.CompletedProcess:
    """Run nbval on ``notebook`` in a child pytest and return the finished process."""
    from cocalc_magics.server import stop_local_server

    local_dir = tmp_path / "local-server"
    environment = {
        **os.environ,
        "COCALC_MAGICS_LOCAL_DIR": str(local_dir),
        "COCALC_MAGICS_DATA_DIR": str(tmp_path / "data"),
    }
    command = [
        sys.executable,
        "-m",
        "pytest",
        "--nbval",
        str(notebook),
        "--nbval-sanitize-with",
        str(SANITIZE),
        "--nbval-current-env",
        "-p",
        "no:cacheprovider",
        "-q",
        "--rootdir",
        str(tmp_path),
    ]
    try:
        return subprocess.run(
            command,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environment,
            cwd=tmp_path,
        )
    finally:
        stop_local_server(local_dir)


def assert_nbval_passed(result: subprocess.CompletedProcess) -> None:
    """Fail with the end of nbval's output unless every cell matched."""
    report = result.stdout[-3000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert " passed" in result.stdout, report
    assert " failed" not in result.stdout, report
