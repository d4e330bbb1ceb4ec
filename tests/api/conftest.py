"""Fixtures of the API client tests: a fake CoCalc server and a clean environment."""

from __future__ import annotations

import pytest

from cocalc_magics.api import Connection
from tests.support.fake_server import FakeCoCalc

_ENVIRONMENT = (
    "COCALC_API_KEY",
    "COCALC_HOST",
    "COCALC_PROJECT_ID",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """Keep the user's settings, proxies and config file out of every test."""
    for name in _ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config-home"))


@pytest.fixture
def fake():
    with FakeCoCalc() as server:
        yield server


@pytest.fixture
def connection(fake):
    with Connection(
        host=fake.url,
        api_key=fake.api_key,
        project_id=fake.project_id,
        retry_backoff=0.01,
    ) as conn:
        yield conn
