"""Starting, stopping and restarting servers; what they write; where they listen."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import psutil
import pytest

from cocalc_magics.server import (
    LocalServer,
    ensure_local_server,
    spawn_server_process,
    stop_local_server,
)
from tests.support.local_server import is_error, raw_call, start_server, wait_until


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_connection_file_and_log_are_private(tmp_path):
    server = start_server(tmp_path)
    try:
        info = json.loads((tmp_path / "connection.json").read_text())
        assert info == {
            "url": server.url,
            "api_key": server.api_key,
            "account_id": server.account_id,
            "project_id": server.project_id,
            "pid": server.process.pid,
        }
        assert mode_of(tmp_path / "connection.json") == 0o600
        assert mode_of(tmp_path / "server.log") == 0o600
        assert mode_of(tmp_path / "state.sqlite3") == 0o600
        assert mode_of(tmp_path / "projects" / server.project_id) == 0o700
        server.project("system.exec", {"command": "echo hi"})
    finally:
        server.process.stop()
    log = (tmp_path / "server.log").read_text()
    assert "listening on" in log
    assert server.api_key not in log
    # The file stays for the next start; its pid is no longer alive.
    assert not psutil.pid_exists(
        json.loads((tmp_path / "connection.json").read_text())["pid"]
    )


def test_restart_keeps_accounts_keys_and_projects(tmp_path):
    first = start_server(tmp_path)
    try:
        created = first.hub(
            "system.manageApiKeys", {"action": "create", "name": "kept"}
        )
        extra_key = created[0]["secret"]
        project_id = first.hub(
            "projects.createProject", {"title": "persisted", "description": "d"}
        )
        first.hub("projects.start", {"project_id": project_id})
        raw_call(
            first.url,
            first.api_key,
            "project",
            {
                "name": "system.writeTextFileToProject",
                "project_id": project_id,
                "args": [{"path": "kept.txt", "content": "still here"}],
            },
        )
        job = first.project("system.exec", {"command": "sleep 30", "async_call": True})
    finally:
        first.process.stop()
    assert (
        not psutil.pid_exists(job["pid"])
        or psutil.Process(job["pid"]).status() == "zombie"
    )

    second = start_server(tmp_path)
    try:
        assert second.api_key == first.api_key
        assert second.project_id == first.project_id
        assert (
            raw_call(second.url, extra_key, "hub", {"name": "system.test"})[
                "account_id"
            ]
            == first.account_id
        )
        state = second.hub("projects.state", {"project_id": project_id})
        assert state["state"] == "opened"
        rows = second.hub(
            "db.userQuery",
            {
                "query": {
                    "projects_all": [
                        {"project_id": project_id, "title": None, "description": None}
                    ]
                }
            },
        )
        assert rows["projects_all"] == [
            {"project_id": project_id, "title": "persisted", "description": "d"}
        ]
        text = raw_call(
            second.url,
            second.api_key,
            "project",
            {
                "name": "system.readTextFileFromProject",
                "project_id": project_id,
                "args": [{"path": "kept.txt"}],
            },
        )
        assert text == "still here"
        assert (
            "does not exist"
            in second.project("system.exec", {"async_get": job["job_id"]})["error"]
        )
    finally:
        second.process.stop()


def test_lost_connection_file_gives_new_key(tmp_path):
    first = start_server(tmp_path)
    first.process.stop()
    second = start_server(tmp_path)
    try:
        (tmp_path / "connection.json").unlink()
    finally:
        second.process.stop()
    third = start_server(tmp_path)
    try:
        assert third.api_key != first.api_key
        assert third.account_id == first.account_id
        assert third.project_id == first.project_id
    finally:
        third.process.stop()


def test_one_server_per_data_directory(tmp_path):
    server = start_server(tmp_path)
    try:
        with pytest.raises(RuntimeError, match="another local server"):
            spawn_server_process(tmp_path)
        assert "now" in server.hub("system.ping")
    finally:
        server.process.stop()


def test_listens_on_loopback_only(local_server):
    port = int(local_server.url.rsplit(":", 1)[1])
    listeners = [
        conn.laddr
        for conn in psutil.Process(local_server.process.pid).net_connections("inet")
        if conn.status == psutil.CONN_LISTEN
    ]
    assert [address.ip for address in listeners] == ["127.0.0.1"]
    assert listeners[0].port == port


def test_starting_project_answers_503_then_runs(tmp_path):
    server = start_server(tmp_path, start_delay=2.0)
    try:
        project_id = server.project_id
        assert server.hub("projects.touch", {"project_id": project_id}) is None
        assert (
            server.hub("projects.state", {"project_id": project_id})["state"]
            == "starting"
        )
        started = time.monotonic()
        reply = server.project("system.ping", timeout_ms=400)
        assert time.monotonic() - started < 1.5
        subject = f"project.{project_id}.0.api.-"
        assert reply == {
            "error": f"request -- no subscribers matching '{subject}' - callHub: "
            f"subject='{subject}', name='system.ping', code='503' "
        }
        assert "now" in server.project("system.ping", timeout_ms=5000)
        assert (
            server.hub("projects.state", {"project_id": project_id})["state"]
            == "running"
        )

        # A call to a stopped project waits for the whole start, outside its timeout.
        server.hub("projects.stop", {"project_id": project_id})
        started = time.monotonic()
        assert "now" in server.project("system.ping", timeout_ms=300)
        assert time.monotonic() - started >= 1.9

        # The hub start times out at the bridge, but the start goes on.
        server.hub("projects.stop", {"project_id": project_id})
        reply = server.hub("projects.start", {"project_id": project_id}, timeout_ms=300)
        assert reply["error"].endswith("name='projects.start', code='408' ")
        assert reply["error"].startswith(
            f"timeout - callHub: subject='hub.account.{server.account_id}.api'"
        )
        wait_until(
            lambda: (
                server.hub("projects.state", {"project_id": project_id})["state"]
                == "running"
            )
        )
    finally:
        server.process.stop()


def test_stop_while_starting(tmp_path):
    server = start_server(tmp_path, start_delay=3.0)
    try:
        project_id = server.project_id
        results = []
        thread = threading.Thread(
            target=lambda: results.append(
                server.hub(
                    "projects.start", {"project_id": project_id}, timeout_ms=10000
                )
            )
        )
        thread.start()
        time.sleep(0.3)
        assert server.hub("projects.stop", {"project_id": project_id}) is None
        thread.join(10)
        assert is_error(results[0])
        assert "stopped while it was starting" in results[0]["error"]
        assert (
            server.hub("projects.state", {"project_id": project_id})["state"]
            == "opened"
        )
    finally:
        server.process.stop()


def test_in_process_server(tmp_path):
    with LocalServer(tmp_path) as server:
        assert server.url.startswith("http://127.0.0.1:")
        reply = raw_call(
            server.url,
            server.api_key,
            "project",
            {
                "name": "system.exec",
                "project_id": server.project_id,
                "args": [{"command": "sleep 30", "async_call": True}],
            },
        )
        pid = reply["pid"]
        assert "sk-" not in repr(server)
    wait_until(
        lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    )
    with pytest.raises(OSError):
        socket.create_connection(
            ("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=1
        )


def test_ensure_and_stop_local_server(tmp_path):
    first = ensure_local_server(tmp_path)
    try:
        assert "api_key" not in repr(first)
        assert first.api_key not in repr(first)
        again = ensure_local_server(tmp_path)
        assert again.pid == first.pid
        assert again.url == first.url
        # The detached server lives in its own session.
        assert os.getsid(first.pid) == first.pid
    finally:
        assert stop_local_server(tmp_path) is True
    assert (
        not psutil.pid_exists(first.pid)
        or psutil.Process(first.pid).status() == "zombie"
    )
    assert stop_local_server(tmp_path) is False


def test_ensure_replaces_dead_server(tmp_path):
    first = ensure_local_server(tmp_path)
    os.kill(first.pid, signal.SIGKILL)
    wait_until(
        lambda: (
            not psutil.pid_exists(first.pid)
            or psutil.Process(first.pid).status() == "zombie"
        )
    )
    try:
        os.waitpid(first.pid, 0)
    except ChildProcessError:
        pass
    second = ensure_local_server(tmp_path)
    try:
        assert second.pid != first.pid
        assert second.api_key == first.api_key
        assert "now" in raw_call(
            second.url, second.api_key, "hub", {"name": "system.ping"}
        )
    finally:
        stop_local_server(tmp_path)


def read_banner(tmp_path, *extra_arguments):
    """Start ``cocalc-magics serve``, return its banner and connection.json, stop it."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cocalc_magics.cli",
            "serve",
            "--data-dir",
            str(tmp_path),
            *extra_arguments,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [process.stdout.readline() for _ in range(6)]
        info = wait_until(
            lambda: json.loads((tmp_path / "connection.json").read_text())
        )
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(10)
        errors = process.stderr.read()
        process.stdout.close()
        process.stderr.close()
    assert code == 0, errors
    return lines, info


def test_serve_command_prints_connection_details(tmp_path):
    lines, info = read_banner(tmp_path)
    assert lines[0].strip() == f"cocalc-magics local server listening on {info['url']}"
    assert lines[1].strip() == f"API key:    sk-…{info['api_key'][-4:]}"
    assert info["project_id"] in lines[2]
    assert str(tmp_path / "connection.json") in lines[4]
    assert "--show-key" in lines[5]
    assert info["url"].startswith("http://127.0.0.1:")


def test_serve_command_masks_key(tmp_path):
    lines, info = read_banner(tmp_path)
    assert info["api_key"] not in "".join(lines)


def test_serve_command_show_key(tmp_path):
    lines, info = read_banner(tmp_path, "--show-key")
    assert info["api_key"] in lines[1]


def test_serve_rejects_file_as_data_dir(tmp_path):
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "cocalc_magics.server", "--data-dir", str(not_a_folder)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "is a file, not a folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_reports_busy_port(tmp_path):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "cocalc_magics.server",
                "--data-dir",
                str(tmp_path),
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        blocker.close()
    assert result.returncode == 1
    assert f"port {port}" in result.stderr
    assert "--port" in result.stderr
    assert "could not start" not in result.stderr
    assert (tmp_path / "server.log").read_text().count("could not start") == 1


def test_in_process_stop_with_open_long_poll(tmp_path):
    import requests

    server = LocalServer(tmp_path).start()
    job = raw_call(
        server.url,
        server.api_key,
        "project",
        {
            "name": "system.exec",
            "project_id": server.project_id,
            "args": [{"command": "sleep", "args": ["30"], "async_call": True}],
        },
    )
    outcomes = []

    def long_poll():
        try:
            outcomes.append(
                raw_call(
                    server.url,
                    server.api_key,
                    "project",
                    {
                        "name": "system.exec",
                        "project_id": server.project_id,
                        "args": [{"async_get": job["job_id"], "async_await": True}],
                        "timeout": 20000,
                    },
                )
            )
        except requests.RequestException as error:
            outcomes.append(error)

    thread = threading.Thread(target=long_poll)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 5
    thread.join(10)
    assert not thread.is_alive()
    assert outcomes
    assert (
        not psutil.pid_exists(job["pid"])
        or psutil.Process(job["pid"]).status() == "zombie"
    )
