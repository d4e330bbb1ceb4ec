"""The session's cached environment settings follow every change of the environment."""

from __future__ import annotations

import pytest
import requests

from cocalc_magics.api import Connection, TLSVerificationError
from cocalc_magics.api.http_session import EnvironmentCachedSession
from tests.support.fake_server import (
    PROJECT_ID,
    ConnectProxy,
    FakeCoCalc,
    make_tls_files,
)

# Each case sets these variables before comparing with a plain requests session.
ENVIRONMENTS = [
    {},
    {"HTTPS_PROXY": "http://proxy.invalid:3128"},
    {
        "https_proxy": "http://lower.invalid:3128",
        "HTTPS_PROXY": "http://upper.invalid:1",
    },
    {"Https_Proxy": "http://mixed.invalid:3128"},
    {"ALL_PROXY": "socks5://all.invalid:1080"},
    {"HTTPS_PROXY": "http://proxy.invalid:3128", "NO_PROXY": "cocalc.example"},
    {"HTTPS_PROXY": "http://proxy.invalid:3128", "no_proxy": "*"},
    {"HTTP_PROXY": "http://plain.invalid:3128", "REQUEST_METHOD": "GET"},
    {"REQUESTS_CA_BUNDLE": "/etc/ssl/a.pem"},
    {"CURL_CA_BUNDLE": "/etc/ssl/b.pem"},
]
URLS = ["https://cocalc.example/api/conat/hub", "http://127.0.0.1:5000/api/conat/hub"]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_fake(tls_files):
    with FakeCoCalc(tls=tls_files) as server:
        yield server


def connect(server) -> Connection:
    return Connection(
        host=server.url, api_key=server.api_key, project_id=PROJECT_ID, max_retries=0
    )


def merged(session: requests.Session, url: str) -> dict:
    return session.merge_environment_settings(url, {}, None, True, None)


def test_same_settings_as_requests(monkeypatch):
    cached = EnvironmentCachedSession()
    plain = requests.Session()
    # Every case runs twice on one session, so the second result comes from the
    # cache. Each case follows another one, so a stale entry would show.
    for environment in ENVIRONMENTS * 2:
        with monkeypatch.context() as patch:
            for name, value in environment.items():
                patch.setenv(name, value)
            for url in URLS:
                assert merged(cached, url) == merged(plain, url), (environment, url)


def test_returned_proxies_are_copies():
    session = EnvironmentCachedSession()
    first = merged(session, URLS[0])
    first["proxies"]["https"] = "http://changed.invalid:1"
    assert "https" not in merged(session, URLS[0])["proxies"]


def test_proxy_set_between_requests_is_used(tls_fake, tls_files, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files.ca_cert))
    with ConnectProxy() as proxy, connect(tls_fake) as conn:
        conn.hub_ping()
        assert proxy.targets == []

        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        conn.hub_ping()
        assert proxy.targets == [f"127.0.0.1:{tls_fake.port}"]

        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        conn.hub_ping()
        assert len(proxy.targets) == 1

        monkeypatch.delenv("NO_PROXY")
        monkeypatch.delenv("HTTPS_PROXY")
        conn.hub_ping()
        assert len(proxy.targets) == 1
    assert len(tls_fake.requests) == 4


def test_ca_bundle_set_between_requests_is_used(tls_fake, tls_files, monkeypatch):
    with connect(tls_fake) as conn:
        with pytest.raises(TLSVerificationError):
            conn.hub_ping()
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files.ca_cert))
        assert conn.hub_ping().now_ms


def test_list_cert_accepted():
    session = EnvironmentCachedSession()
    session.cert = ["/tmp/client.pem", "/tmp/client.key"]
    plain = requests.Session()
    plain.cert = ["/tmp/client.pem", "/tmp/client.key"]
    assert merged(session, URLS[0]) == merged(plain, URLS[0])


def test_plain_http_loopback_skips_proxy(monkeypatch):
    # A proxy would carry the key in clear text off the machine.
    with FakeCoCalc() as proxy, FakeCoCalc() as site:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("ALL_PROXY", proxy.url)
        with connect(site) as conn:
            conn.ping()
        assert proxy.requests == []
        assert len(site.requests) == 1
