"""Fixtures of the job tests: a local server, a connection, and a private ledger."""

from __future__ import annotations

import pytest

from cocalc_magics.api import Connection
from cocalc_magics.jobs import DATA_DIR_VARIABLE, JobLedger, stop_watchers
from tests.support.local_server import local_server  # noqa: F401 - a fixture


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A private ledger directory, also set in the environment for child processes."""
    directory = tmp_path / "data"
    monkeypatch.setenv(DATA_DIR_VARIABLE, str(directory))
    return directory


@pytest.fixture
def ledger(data_dir) -> JobLedger:
    return JobLedger()


@pytest.fixture
def connection(local_server) -> Connection:  # noqa: F811
    with Connection(
        host=local_server.url,
        api_key=local_server.api_key,
        project_id=local_server.project_id,
    ) as client:
        yield client


@pytest.fixture(autouse=True)
def no_watcher_left():
    """Stop the watcher threads a test leaves, so none polls into the next test."""
    yield
    stop_watchers(timeout=10)
