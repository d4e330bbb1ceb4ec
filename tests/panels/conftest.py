"""Fixtures of the panel tests: a local server and an isolated job ledger."""

from __future__ import annotations

import pytest

from tests.support.local_server import local_server  # noqa: F401 - a fixture


@pytest.fixture(autouse=True)
def isolated_ledger(tmp_path, monkeypatch):
    """Keep the job ledger of every test in its own temporary directory."""
    monkeypatch.setenv("COCALC_MAGICS_DATA_DIR", str(tmp_path / "ledger"))
    return tmp_path / "ledger"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, for fixtures that act on failure."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
