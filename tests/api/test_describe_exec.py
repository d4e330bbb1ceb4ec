"""``Connection.describe_exec``: the exact exec request, built but not sent."""

from __future__ import annotations

import pytest

from tests.support.fake_server import PROJECT_ID

OTHER_PROJECT = "99999999-8888-7777-6666-555555555555"

BLOCKING_REPLY = {"type": "blocking", "stdout": "", "stderr": "", "exit_code": 0}
ASYNC_REPLY = {
    "type": "async",
    "job_id": "0b9f0e3c-1111-2222-3333-444444444444",
    "status": "running",
    "stdout": "",
    "stderr": "",
    "exit_code": 0,
    "start": 1,
    "pid": 42,
}

OPTION_SETS = [
    {},
    {"timeout": 12.5, "max_output": 5000, "bash": True, "path": "work"},
    {"cwd": "/tmp", "env": {"GREETING": "héllo wörld"}, "compute_server_id": 3},
    {"project_id": OTHER_PROJECT, "max_output": None, "bash": False},
]


@pytest.mark.parametrize("options", OPTION_SETS)
def test_describes_the_body_exec_sends(fake, connection, options):
    described = connection.describe_exec("ls -la ~", **options)
    assert fake.requests == []

    fake.script("system.exec", BLOCKING_REPLY)
    connection.exec("ls -la ~", **options)
    sent = fake.requests[0]
    assert described["json"] == sent.json
    assert described["url"].endswith(sent.path)
    assert described["method"] == sent.method


@pytest.mark.parametrize("timeout", [0, 30.0, 3600])
def test_describes_the_async_start(fake, connection, timeout):
    described = connection.describe_exec(
        "sleep 10", async_call=True, timeout=timeout, max_output=None
    )
    fake.script("system.exec", ASYNC_REPLY)
    connection.exec_async("sleep 10", timeout=timeout)

    assert described["json"] == fake.requests[0].json
    assert described["json"]["args"][0]["async_call"] is True


def test_args_are_kept_apart_from_the_command(fake, connection):
    described = connection.describe_exec("python3", ["-c", "print('a b')"])
    options = described["json"]["args"][0]
    assert options["command"] == "python3"
    assert options["args"] == ["-c", "print('a b')"]
    assert options["err_on_exit"] is False


def test_units_and_defaults(connection):
    body = connection.describe_exec("date", timeout=30)["json"]
    assert body["args"][0]["timeout"] == 30
    assert body["args"][0]["max_output"] == 1_048_576
    assert body["timeout"] == 35_000
    assert body["project_id"] == PROJECT_ID


def test_key_is_masked(fake, connection):
    described = connection.describe_exec("date")
    assert fake.api_key not in repr(described)
    assert described["headers"]["Authorization"] == "Bearer sk-…0000"


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"timeout": 0}, ValueError),
        ({"timeout": "10"}, TypeError),
        ({"max_output": -1}, ValueError),
        ({"env": {"A": 1}}, TypeError),
        ({"path": 5}, TypeError),
    ],
)
def test_bad_options_fail_like_exec(fake, connection, options, error):
    with pytest.raises(error):
        connection.describe_exec("date", **options)
    with pytest.raises(error):
        connection.exec("date", **options)
    assert fake.requests == []


def test_empty_command_is_refused(connection):
    with pytest.raises(ValueError, match="non-empty"):
        connection.describe_exec("   ")
