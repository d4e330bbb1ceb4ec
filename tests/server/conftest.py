"""Fixtures of the server tests: a server child process and an in-process server."""

from __future__ import annotations

import pytest

from cocalc_magics.server import LocalServer
from tests.support.local_server import local_server  # noqa: F401 - a fixture


@pytest.fixture(scope="module")
def inprocess_server(tmp_path_factory: pytest.TempPathFactory) -> LocalServer:
    """A LocalServer in a thread of the test process, for tests needing accounts."""
    server = LocalServer(tmp_path_factory.mktemp("inprocess-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
