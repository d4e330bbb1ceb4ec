"""Pytest fixtures and helpers around a real local server in a child process.

Use from a ``conftest.py``::

    from tests.support.local_server import local_server  # noqa: F401

``local_server`` is session-scoped: one ``python -m cocalc_magics.server`` child on
a free loopback port, with its data directory in a temporary folder, stopped (with
every process it started) at the end of the session.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from cocalc_magics.server import ServerProcess, spawn_server_process

# Small retention limits, so that tests can see records expire and get evicted.
TEST_ENVIRONMENT = {
    "COCALC_PROJECT_ASYNC_EXEC_TTL_S": "600",
    "COCALC_PROJECT_ASYNC_EXEC_CACHE_MAX": "100",
}


@dataclass
class RunningServer:
    """A running local server and the credentials of its default account."""

    url: str
    api_key: str = field(repr=False)
    project_id: str
    account_id: str
    data_dir: Path
    process: ServerProcess = field(repr=False)

    def call(self, endpoint: str, body: dict[str, Any], **kwargs: Any) -> Any:
        """POST a body with the default key and return the decoded 200 reply."""
        return raw_call(self.url, self.api_key, endpoint, body, **kwargs)

    def project(self, name: str, *args: Any, timeout_ms: int | None = None) -> Any:
        """Call a project method on the default project."""
        body: dict[str, Any] = {
            "name": name,
            "args": list(args),
            "project_id": self.project_id,
        }
        if timeout_ms is not None:
            body["timeout"] = timeout_ms
        return self.call("project", body)

    def hub(self, name: str, *args: Any, timeout_ms: int | None = None) -> Any:
        """Call a hub method as the default account."""
        body: dict[str, Any] = {"name": name, "args": list(args)}
        if timeout_ms is not None:
            body["timeout"] = timeout_ms
        return self.call("hub", body)


def raw_call(
    url: str,
    key: str | None,
    endpoint: str,
    body: Any,
    *,
    scheme: str = "Bearer",
    session: requests.Session | None = None,
    timeout: float = 120.0,
) -> Any:
    """POST JSON to ``{url}/api/conat/{endpoint}``; assert HTTP 200 and decode it.

    ``scheme`` "Basic" sends the key as the user name with an empty password.
    """
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = authorization(key, scheme)
    poster = session or requests
    response = poster.post(
        f"{url}/api/conat/{endpoint}",
        data=json.dumps(body),
        headers=headers,
        timeout=timeout,
    )
    assert response.status_code == 200, response.text[:300]
    return response.json()


def authorization(key: str, scheme: str = "Bearer") -> str:
    if scheme == "Basic":
        return "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    return f"{scheme} {key}"


def is_error(reply: Any) -> bool:
    """CoCalc's rule: an error is an object whose only key is a string ``error``."""
    return (
        isinstance(reply, dict)
        and list(reply) == ["error"]
        and isinstance(reply["error"], str)
    )


def wait_until(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``condition`` every 50 ms until it returns a true value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.05)


def start_server(
    data_dir: Path,
    *,
    start_delay: float = 0.0,
    environment: dict[str, str] | None = None,
) -> RunningServer:
    env = {**os.environ, **TEST_ENVIRONMENT, **(environment or {})}
    process = spawn_server_process(data_dir, start_delay=start_delay, env=env)
    return RunningServer(
        url=process.url,
        api_key=process.api_key,
        project_id=process.project_id,
        account_id=process.account_id,
        data_dir=Path(data_dir),
        process=process,
    )


@pytest.fixture(scope="session")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    """One local server for the whole session, on a free loopback port."""
    server = start_server(tmp_path_factory.mktemp("local-server"))
    try:
        yield server
    finally:
        server.process.stop()
