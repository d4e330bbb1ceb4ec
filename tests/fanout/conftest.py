"""Fixtures of the fan-out tests: a local server per module and a class of projects.

Each test module gets its own server child process (``module_server``), so the
projects, processes and timings of one module never mix with another's.
"""

from __future__ import annotations

import threading

import pytest

from cocalc_magics.api import Connection
from tests.support.local_server import RunningServer, start_server

CLASS_SIZE = 100


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    """A local server of this test module, stopped with every process it started."""
    server = start_server(tmp_path_factory.mktemp("fanout-server"))
    try:
        yield server
    finally:
        server.process.stop()


@pytest.fixture(scope="module")
def connection(module_server: RunningServer) -> Connection:
    """A client of the module's server, as the server's default account."""
    with Connection(
        host=module_server.url,
        api_key=module_server.api_key,
        project_id=module_server.project_id,
        label="local server",
    ) as client:
        yield client


@pytest.fixture(scope="module")
def class_projects(connection: Connection) -> list[str]:
    """Ids of CLASS_SIZE new projects, made with the hub's projects.createProject."""
    return [
        connection.create_project(f"Lab 3 - student {number:03d}")
        for number in range(CLASS_SIZE)
    ]


class ThreadSampler:
    """Records the highest thread count of this process while it runs."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ThreadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            # Not counting the sampler itself.
            self.peak = max(self.peak, threading.active_count() - 1)
