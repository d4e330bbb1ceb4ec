"""The key scan of the fault suite finds a key planted in each kind of place.

The planted key is a different string from the canary, so the session's own scan
stays clean; each test hands the collected texts and files to a scan that looks for
the planted key instead.
"""

from __future__ import annotations

import logging
import sys

import pytest
from ipywidgets import Text

from tests.faults.conftest import _SCAN, SecretScan, run_cell

PLANTED = "sk-PLANTED-0a1b2c3d4e5f"

_printed: list[str] = []


def scan_for_planted(**extra) -> SecretScan:
    return SecretScan(
        secrets={PLANTED}, texts=list(_SCAN.texts), roots=list(_SCAN.roots), **extra
    )


def test_finds_a_key_in_a_log_record_at_debug_level():
    logging.getLogger("urllib3.connectionpool").debug("header %s", PLANTED)
    assert any("log record urllib3" in where for where in scan_for_planted().findings())


def test_finds_a_key_in_a_local_variable_of_a_logged_traceback():
    def fail(api_key):
        raise RuntimeError("no key in this message")

    try:
        fail(PLANTED)
    except RuntimeError:
        logging.getLogger("cocalc_magics.test").exception("failed")
    assert any("log record" in where for where in scan_for_planted().findings())


def test_finds_a_key_in_a_file(secret_scan):
    (secret_scan.roots[0] / "notebook.ipynb").write_text(f'{{"key": "{PLANTED}"}}')
    try:
        assert any("notebook.ipynb" in where for where in scan_for_planted().findings())
    finally:
        (secret_scan.roots[0] / "notebook.ipynb").unlink()


def test_finds_a_key_in_a_cell_output_and_the_namespace(shell):
    run_cell(shell, f"print('{PLANTED}'[:3] + '{PLANTED[3:]}')")
    shell.user_ns["held"] = {"token": PLANTED}
    assert any("stdout" in where for where in scan_for_planted().findings())


def test_finds_a_key_in_a_widget_state():
    widget = Text(value=PLANTED)
    try:
        state = widget.get_state()
        scan = SecretScan(secrets={PLANTED})
        scan.add("widget", state)
        assert scan.findings()
    finally:
        widget.close()


def test_finds_a_key_in_a_verbose_ipython_traceback(shell):
    shell.run_line_magic("xmode", "Verbose")
    run = run_cell(shell, f"def f(key):\n    1 / 0\nf('{PLANTED}')")
    assert isinstance(run.error, ZeroDivisionError)
    assert PLANTED in run.stdout
    assert scan_for_planted().findings()


def test_prints_a_key_for_the_next_test():
    # Captured stdout reaches the scan through the test report, after the test.
    print(PLANTED, file=sys.stdout)
    _printed.append(PLANTED)


def test_finds_the_key_printed_by_the_previous_test():
    if not _printed:
        pytest.skip("runs only after test_prints_a_key_for_the_next_test")
    findings = scan_for_planted().findings()
    assert any("test_prints_a_key_for_the_next_test" in where for where in findings)


def test_checks_the_mode_of_key_stores(tmp_path):
    store = tmp_path / "connection.json"
    store.write_text(PLANTED)
    store.chmod(0o644)
    scan = SecretScan(secrets={PLANTED}, roots=[tmp_path])
    assert scan.findings() == [f"{store}: stores a key with mode 0o644"]
    store.chmod(0o600)
    assert scan.findings() == []
