"""The key stays secret, TLS is verified, and proxy variables are honoured."""

from __future__ import annotations

import logging
import pickle
import warnings

import pytest
import requests

from cocalc_magics.api import (
    AuthenticationError,
    CoCalcError,
    Connection,
    ConnectionFailedError,
    InsecureTransportError,
    InsecureTransportWarning,
    TLSVerificationError,
)
from tests.support.fake_server import (
    PROJECT_ID,
    ConnectProxy,
    FakeCoCalc,
    Reply,
    make_tls_files,
)
from tests.support.local_server import local_server  # noqa: F401 - a fixture

CANARY = "sk-CANARY-7f3a9c0e5b1d"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_fake(tls_files):
    with FakeCoCalc(api_key=CANARY, tls=tls_files) as server:
        yield server


@pytest.fixture
def canary_fake():
    with FakeCoCalc(api_key=CANARY) as server:
        yield server


def connect(server, **kw) -> Connection:
    return Connection(
        host=server.url,
        api_key=server.api_key,
        project_id=PROJECT_ID,
        retry_backoff=0.01,
        **kw,
    )


def test_key_absent_from_reprs_and_results(canary_fake):
    canary_fake.script(
        "system.exec",
        {"type": "blocking", "stdout": "hi\n", "stderr": "", "exit_code": 0},
    )
    with connect(canary_fake) as conn:
        texts = [
            repr(conn),
            str(conn),
            repr(conn.settings),
            str(conn.settings),
            "\n".join(conn.settings.describe()),
            repr(conn._auth),
            repr(conn.exec("echo hi")),
            conn.exec("echo hi")._repr_html_(),
            repr(conn.ping()),
            str(conn.describe_request("project", "system.ping", [])),
        ]
    for text in texts:
        assert CANARY not in text
    assert "sk-…5b1d" in repr(conn)


def test_key_only_in_authorization_header(canary_fake):
    with connect(canary_fake) as conn:
        conn.ping()
    request = canary_fake.requests[0]
    assert CANARY not in request.path
    assert CANARY.encode() not in request.body
    headers_with_key = [
        name for name, value in request.headers.items() if CANARY in value
    ]
    assert headers_with_key == ["Authorization"]


def test_key_scrubbed_from_server_echo(canary_fake):
    canary_fake.script(
        "system.exec", Reply.error(f"invalid api key {CANARY}", status=401)
    )
    canary_fake.script("system.ping", Reply.html(500, f"<p>bad key {CANARY}</p>"))
    canary_fake.script("system.listing", Reply(body=f"not json {CANARY}"))
    with connect(canary_fake, max_retries=0) as conn:
        errors = []
        for call in (lambda: conn.exec("echo hi"), conn.ping, conn.listing):
            with pytest.raises(CoCalcError) as caught:
                call()
            errors.append(caught.value)
    assert isinstance(errors[0], AuthenticationError)
    for error in errors:
        for text in (
            str(error),
            repr(error),
            error.message,
            error.raw or "",
            error.hint,
        ):
            assert CANARY not in text
        assert "sk-…5b1d" in error.message


def test_key_absent_from_debug_logs(canary_fake, caplog):
    canary_fake.script("system.exec", Reply.error("Error: boom"))
    canary_fake.script("projects.state", Reply.dropped())
    with caplog.at_level(logging.DEBUG), connect(canary_fake) as conn:
        conn.ping()
        with pytest.raises(CoCalcError):
            conn.exec("date")
        with pytest.raises(ConnectionFailedError):
            conn.project_state()
    loggers = {record.name for record in caplog.records}
    assert "urllib3.connectionpool" in loggers
    assert "cocalc_magics.api.transport" in loggers
    for record in caplog.records:
        assert CANARY not in record.getMessage()
    assert CANARY not in caplog.text


def test_exceptions_do_not_chain_request_objects(canary_fake):
    canary_fake.script("system.exec", Reply.dropped())
    with connect(canary_fake) as conn:
        with pytest.raises(ConnectionFailedError) as caught:
            conn.exec("date")
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    assert CANARY.encode() not in pickle.dumps(caught.value)


def test_plain_http_to_remote_host_rejected(fake):
    conn = Connection(
        host="http://cocalc.example.test", api_key=CANARY, project_id=PROJECT_ID
    )
    with pytest.raises(InsecureTransportError) as caught:
        conn.ping()
    assert "plain HTTP to cocalc.example.test" in caught.value.message
    assert "allow_insecure_http=True" in caught.value.hint
    assert CANARY not in str(caught.value)
    conn.close()


@pytest.mark.parametrize(
    "host",
    [
        "http://127.0.0.1:9",
        "http://localhost:9",
        "http://[::1]:9",
        "http://127.8.9.10:9",
    ],
)
def test_plain_http_to_loopback_allowed(host):
    with Connection(host=host, api_key=CANARY, max_retries=0) as conn:
        with pytest.raises(ConnectionFailedError):
            conn.hub_ping()


def test_insecure_http_warns_every_time(fake, monkeypatch):
    # The fake server doubles as the HTTP proxy, so nothing leaves loopback.
    monkeypatch.setenv("HTTP_PROXY", fake.url)
    conn = Connection(
        host="http://cocalc.example.test",
        api_key=fake.api_key,
        project_id=PROJECT_ID,
        allow_insecure_http=True,
    )
    with warnings.catch_warnings(record=True) as caught:
        conn.ping()
        conn.ping()
    conn.close()
    insecure = [w for w in caught if issubclass(w.category, InsecureTransportWarning)]
    assert len(insecure) == 2
    assert "cocalc.example.test" in str(insecure[0].message)
    assert CANARY not in str(insecure[0].message)
    assert [r.path for r in fake.requests] == ["/api/conat/project"] * 2
    assert fake.requests[0].header("Host") == "cocalc.example.test"


def test_tls_without_ca_fails_verification(tls_fake):
    with connect(tls_fake) as conn, pytest.raises(TLSVerificationError) as caught:
        conn.hub_ping()
    error = caught.value
    assert (
        f"TLS certificate verification failed for 127.0.0.1:{tls_fake.port}"
        in error.message
    )
    assert "REQUESTS_CA_BUNDLE" in error.hint
    assert not isinstance(error, ConnectionFailedError)
    assert tls_fake.requests == []


@pytest.mark.parametrize(
    "variable", ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"]
)
def test_tls_with_ca_bundle_from_environment(
    tls_fake, tls_files, monkeypatch, variable
):
    monkeypatch.setenv(variable, str(tls_files.ca_cert))
    with connect(tls_fake) as conn:
        assert conn.hub_ping().now_ms
    assert len(tls_fake.requests) == 1


def test_https_proxy_is_used(tls_fake, tls_files, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files.ca_cert))
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        with connect(tls_fake) as conn:
            conn.hub_ping()
    assert proxy.targets == [f"127.0.0.1:{tls_fake.port}"]
    assert len(tls_fake.requests) == 1


def test_no_proxy_bypasses_proxy(tls_fake, tls_files, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files.ca_cert))
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        with connect(tls_fake) as conn:
            conn.hub_ping()
    assert proxy.targets == []
    assert len(tls_fake.requests) == 1


def test_unreachable_proxy_is_reported(tls_fake, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with connect(tls_fake, max_retries=0) as conn:
        with pytest.raises(ConnectionFailedError) as caught:
            conn.hub_ping()
    assert "proxy" in caught.value.message
    assert "NO_PROXY" in caught.value.hint


def test_https_client_on_plain_http_server(fake):
    https_url = fake.url.replace("http://", "https://")
    with Connection(host=https_url, api_key=fake.api_key, max_retries=0) as conn:
        with pytest.raises(ConnectionFailedError) as caught:
            conn.hub_ping()
    assert "TLS connection" in caught.value.message
    assert "scheme" in caught.value.hint


def test_netrc_does_not_replace_key(canary_fake, monkeypatch, tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password other-secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with connect(canary_fake) as conn:
        conn.ping()
    assert canary_fake.requests[0].header("Authorization") == f"Bearer {CANARY}"


def test_header_repr_masks_key_but_sends_it(canary_fake):
    # Tracebacks with local variables print the header dictionaries that requests
    # and urllib3 hold, for example when Ctrl-C interrupts a request.
    with connect(canary_fake) as conn:
        prepared = conn._auth(requests.Request("POST", canary_fake.url).prepare())
        conn.ping()
    shown = repr(prepared.headers) + repr(dict(prepared.headers))
    assert CANARY not in shown
    assert "sk-…5b1d" in shown
    assert canary_fake.requests[0].header("Authorization") == f"Bearer {CANARY}"


def test_https_client_on_local_server(local_server):  # noqa: F811
    # The local server serves plain HTTP and never replies to a TLS ClientHello.
    https_url = local_server.url.replace("http://", "https://")
    with Connection(
        host=https_url, api_key=local_server.api_key, max_retries=0, connect_timeout=1
    ) as conn, pytest.raises(ConnectionFailedError) as caught:
        conn.hub_ping()
    error = caught.value
    assert "TLS connection" in error.message
    assert "within 1 s" in error.message
    assert "http://" in error.hint
    assert error.retry_safe
