"""Every kind of failure becomes the right exception, with a readable message."""

from __future__ import annotations

import socket

import pytest

from cocalc_magics.api import (
    AuthenticationError,
    BridgeTimeoutError,
    CoCalcError,
    Connection,
    ConnectionFailedError,
    ExecTimeoutError,
    HTTPStatusError,
    JobNotFoundError,
    NotListeningError,
    PermissionDeniedError,
    ProjectNotRunningError,
    ProtocolError,
    ReadTimeoutError,
    RemoteError,
    RequestTooLargeError,
)
from cocalc_magics.api.errors import classify_error_text, display_message
from cocalc_magics.api.http_errors import is_error_envelope, text_excerpt
from tests.support.fake_server import PROJECT_ID, Reply

BRIDGE = f"callHub: subject='project.{PROJECT_ID}.0.api.-', name='system.exec'"


@pytest.mark.parametrize(
    ("text", "error_class"),
    [
        ("You must provide authentication via an API key.", AuthenticationError),
        ("Unknown authorization type 'Token'", AuthenticationError),
        (
            "must be signed in and MUST provide an api key (cookies are not allowed)",
            AuthenticationError,
        ),
        ("must sign in as project or account", AuthenticationError),
        ("must specify project_id or use project-specific api key", RemoteError),
        (
            "project specific api key must match requested project",
            PermissionDeniedError,
        ),
        ("user must be a collaborator on the project", PermissionDeniedError),
        ("Error: must be collaborator on project to start it", PermissionDeniedError),
        ("Error: Must be an admin to do admin search.", PermissionDeniedError),
        ("not allowed with a project-specific api key", PermissionDeniedError),
        (f"timeout - {BRIDGE}, code='408' ", BridgeTimeoutError),
        (
            f"timeout - Error: operation has timed out - {BRIDGE}, code='408' ",
            BridgeTimeoutError,
        ),
        (
            (
                f"request -- no subscribers matching 'project.{PROJECT_ID}.0.api.-' - "
                f"{BRIDGE}, code='503' "
            ),
            NotListeningError,
        ),
        ("no host", ProjectNotRunningError),
        ("project not running", ProjectNotRunningError),
        ("Error: Async operation 'job-1' does not exist.", JobNotFoundError),
        ("killed command 'bash /tmp/cocalc-XXXXXX/a.sh'", ExecTimeoutError),
        ("Error: unknown function 'foo.bar'", RemoteError),
        ("Error: file does not exist.", RemoteError),
        ("command 'false' exited with nonzero code 1 -- stderr=''", RemoteError),
    ],
)
def test_error_text_classification(text, error_class):
    error = classify_error_text("system.exec", text, status=200)
    assert type(error) is error_class
    assert error.raw == text
    assert error.method == "system.exec"
    if error_class is not RemoteError:
        assert error.hint


def test_nonzero_exit_error_explains_err_on_exit():
    error = classify_error_text(
        "system.exec", "command 'false' exited with nonzero code 1"
    )
    assert "err_on_exit" in error.hint


def test_error_prefix_dropped_for_display_only():
    error = classify_error_text(
        "projects.start", "Error: must be collaborator on project to start it"
    )
    assert error.message == "must be collaborator on project to start it"
    assert error.raw == "Error: must be collaborator on project to start it"
    assert str(error) == "projects.start: must be collaborator on project to start it"
    assert display_message("  Error: x  ") == "x"
    assert display_message("TypeError: x") == "TypeError: x"


def test_not_listening_is_retry_safe():
    error = classify_error_text("system.exec", f"x - {BRIDGE}, code='503' ")
    assert error.retry_safe


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"error": "x"}, True),
        ({"error": ""}, True),
        ({"state": "opened", "error": ""}, False),
        ({"error": None}, False),
        ({"error": {"message": "x"}}, False),
        ([{"error": "x"}], False),
        ("error", False),
        (None, False),
    ],
)
def test_error_envelope_rule(value, expected):
    assert is_error_envelope(value) is expected


@pytest.mark.parametrize(
    ("reply", "error_class"),
    [
        (Reply.error("no host"), ProjectNotRunningError),
        (Reply.error("project not running"), ProjectNotRunningError),
        (Reply.error("Error: Total time limit (=30 seconds) exceeded"), RemoteError),
        (Reply.error(f"timeout - {BRIDGE}, code='408' "), BridgeTimeoutError),
    ],
)
def test_envelopes_from_server(fake, connection, reply, error_class):
    fake.script("system.exec", reply)
    with pytest.raises(error_class) as caught:
        connection.exec("date")
    assert caught.value.status == 200
    assert caught.value.project_id == PROJECT_ID


def test_project_not_running_says_so(fake, connection):
    fake.script("system.exec", Reply.error("no host"))
    with pytest.raises(ProjectNotRunningError) as caught:
        connection.exec("date", timeout=60)
    assert "start" in caught.value.hint.lower()
    assert len(fake.requests) == 1


def test_project_key_cannot_start_project(fake, connection):
    fake.script(
        "projects.start", Reply.error("not allowed with a project-specific api key")
    )
    with pytest.raises(PermissionDeniedError) as caught:
        connection.start_project()
    assert "CoCalc web UI" in caught.value.hint


def test_bridge_timeout_says_work_may_continue(fake, connection):
    fake.script("system.exec", Reply.error(f"timeout - {BRIDGE}, code='408' "))
    with pytest.raises(BridgeTimeoutError) as caught:
        connection.exec("sleep 100", timeout=100)
    assert "may still be running" in caught.value.hint


def test_wrong_key_on_each_endpoint(fake):
    with Connection(
        host=fake.url, api_key="sk-WRONGKEY-1234567890", project_id=PROJECT_ID
    ) as conn:
        with pytest.raises(AuthenticationError) as hub:
            conn.hub_ping()
        with pytest.raises(AuthenticationError) as project:
            conn.ping()
    assert "project-scoped" in hub.value.hint
    assert project.value.message == "must sign in as project or account"


def test_not_a_collaborator(fake, connection):
    other = "99999999-8888-7777-6666-555555555555"
    with pytest.raises(PermissionDeniedError) as caught:
        connection.ping(project_id=other)
    assert caught.value.project_id == other
    assert "collaborator" in caught.value.hint


def test_http_404_html_page_becomes_short_text(fake):
    with Connection(host=fake.url + "/wrong-base", api_key=fake.api_key) as conn:
        with pytest.raises(HTTPStatusError) as caught:
            conn.hub_ping()
    error = caught.value
    assert error.status == 404
    assert "<" not in error.message
    assert "This page could not be found" in error.message
    assert "color:#000" not in error.message
    assert "base path" in error.hint
    assert "/wrong-base/api/conat/hub" in error.hint


@pytest.mark.parametrize("status", [500, 502, 504])
def test_http_error_pages(fake, connection, status):
    page = (
        "<html><head><title>Bad Gateway</title></head><body><h1>"
        + "x " * 500
        + "</h1></body></html>"
    )
    fake.script("system.exec", Reply.html(status, page))
    with pytest.raises(HTTPStatusError) as caught:
        connection.exec("date")
    error = caught.value
    assert error.status == status
    assert f"HTTP {status}" in error.message
    assert "Bad Gateway" in error.message
    assert "<" not in error.message
    assert len(error.message) < 300
    assert not error.retry_safe


def test_http_400_plain_text(fake, connection):
    fake.script("system.ping", Reply.text(400, "Invalid JSON"))
    with pytest.raises(HTTPStatusError) as caught:
        connection.ping()
    assert caught.value.message == "HTTP 400 Bad Request: Invalid JSON"
    assert "JSON" in caught.value.hint


def test_real_413_answer(fake, connection):
    fake.script(
        "system.writeTextFileToProject", Reply.text(413, "Body exceeded 1mb limit")
    )
    with pytest.raises(RequestTooLargeError) as caught:
        connection.write_text_file("a.txt", "small")
    assert caught.value.status == 413
    assert "Body exceeded 1mb limit" in caught.value.message
    assert "1 MB" in caught.value.hint


def test_401_with_json_error(fake, connection):
    fake.script("system.exec", Reply.error("invalid api key", status=401))
    with pytest.raises(AuthenticationError) as caught:
        connection.exec("echo hi")
    assert caught.value.status == 401
    assert caught.value.message == "HTTP 401: invalid api key"


def test_redirect_is_not_followed(fake, connection):
    fake.script(
        "*",
        Reply(status=302, headers={"Location": "https://elsewhere.example/"}, body=""),
    )
    with pytest.raises(HTTPStatusError) as caught:
        connection.hub_ping()
    assert caught.value.status == 302
    assert "https://elsewhere.example/" in caught.value.hint
    assert len(fake.requests) == 1


def test_malformed_json(fake, connection):
    fake.script("system.exec", Reply(body='{"type": "blocking", "stdout": "x'))
    with pytest.raises(ProtocolError) as caught:
        connection.exec("date")
    assert "not valid JSON" in caught.value.message
    assert caught.value.status == 200


def test_html_page_with_status_200(fake, connection):
    fake.script(
        "*", Reply.html(200, "<html><title>Sign in</title><body>Welcome</body></html>")
    )
    with pytest.raises(ProtocolError) as caught:
        connection.hub_ping()
    assert "Sign in Welcome" in caught.value.message
    assert "<" not in caught.value.message


def test_body_cut_before_declared_length(fake, connection):
    fake.script(
        "system.exec",
        Reply.json({"type": "blocking", "stdout": "x" * 1000}, cut_after=100),
    )
    with pytest.raises((ProtocolError, ConnectionFailedError)) as caught:
        connection.exec("date")
    assert "may be running" in caught.value.hint
    assert len(fake.requests) == 1


def test_dropped_connection_on_exec(fake, connection):
    fake.script("system.exec", Reply.dropped())
    with pytest.raises(ConnectionFailedError) as caught:
        connection.exec("date")
    assert "closed before a response" in caught.value.message
    assert "may be running" in caught.value.hint
    assert not caught.value.retry_safe
    assert len(fake.requests) == 1


def test_connection_refused():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (
        Connection(
            host=f"http://127.0.0.1:{port}",
            api_key="sk-TESTKEY-000000000000",
            max_retries=0,
        ) as conn,
        pytest.raises(ConnectionFailedError) as caught,
    ):
        conn.hub_ping()
    assert caught.value.message == f"connection to 127.0.0.1:{port} refused"
    assert caught.value.retry_safe
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_read_timeout(fake):
    fake.script("system.exec", Reply.json({"type": "blocking"}, delay=3))
    with (
        Connection(
            host=fake.url,
            api_key=fake.api_key,
            project_id=PROJECT_ID,
            cold_start_margin=0.0,
        ) as conn,
        pytest.raises(ReadTimeoutError) as caught,
    ):
        conn.project_call("system.exec", [{"command": "date"}], timeout_ms=300)
    assert "within 0.3 s" in caught.value.message
    assert "may still be running" in caught.value.hint
    assert len(fake.requests) == 1


def test_unexpected_result_shape(fake, connection):
    fake.script("system.exec", ["not", "an", "object"])
    with pytest.raises(ProtocolError, match="expected a JSON object"):
        connection.exec("date")


def test_every_error_is_a_cocalc_error():
    for error_class in (
        AuthenticationError,
        BridgeTimeoutError,
        ConnectionFailedError,
        HTTPStatusError,
        ProtocolError,
        ReadTimeoutError,
        RequestTooLargeError,
        ExecTimeoutError,
    ):
        assert issubclass(error_class, CoCalcError)
    assert issubclass(ExecTimeoutError, RemoteError)


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (
            b"<html><script>var a=1;</script><p>Gateway&nbsp;Timeout</p></html>",
            "text/html",
            "Gateway Timeout",
        ),
        (b"plain   text\n\nbody", "text/plain", "plain text body"),
        (b"", "text/plain", "(empty body)"),
        (b"\xff\xfe broken", "text/plain", "\ufffd\ufffd broken"),
    ],
)
def test_text_excerpt(body, content_type, expected):
    assert text_excerpt(body, content_type) == expected


def test_text_excerpt_is_capped():
    excerpt = text_excerpt(b"word " * 1000, "text/plain", limit=50)
    assert len(excerpt) == 50
    assert excerpt.endswith("…")
