"""Importing the package outside IPython must work and have no side effects."""

import subprocess
import sys
import textwrap


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_plain_import_succeeds():
    result = run_python("import cocalc_magics; print('ok')")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_plain_import_starts_no_threads():
    result = run_python(
        """
        import threading
        before = threading.active_count()
        import cocalc_magics
        print(threading.active_count() - before)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_plain_import_loads_no_ipython():
    result = run_python(
        """
        import sys
        import cocalc_magics
        print(sorted(m for m in ("IPython", "ipywidgets", "requests") if m in sys.modules))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
