"""Blocking ``system.exec`` over HTTP, against real processes."""

from __future__ import annotations

import os
import re
import time
import uuid

import psutil
import pytest

from tests.support.local_server import is_error, wait_until


def run(server, timeout_ms=30000, **options):
    return server.project("system.exec", options, timeout_ms=timeout_ms)


def home_of(server):
    return server.data_dir / "projects" / server.project_id


def test_direct_command_with_args(local_server):
    reply = run(local_server, command="printf", args=["%s|", "a b", "*"])
    assert reply == {
        "type": "blocking",
        "stdout": "a b|*|",
        "stderr": "",
        "exit_code": 0,
    }


def test_whitespace_switches_to_bash(local_server):
    reply = run(local_server, command="echo one | tr a-z A-Z")
    assert reply["stdout"] == "ONE\n"
    reply = run(local_server, command=" date ", bash=False)
    assert reply["exit_code"] == 0
    assert reply["stdout"].strip()


def test_bash_script_file_form(local_server):
    reply = run(local_server, command='echo "$0"', err_on_exit=False)
    assert re.fullmatch(r"/tmp/cocalc-[A-Za-z0-9]{6}/a\.sh\n", reply["stdout"])
    script_dir = os.path.dirname(reply["stdout"].strip())
    assert not os.path.exists(script_dir)


def test_bash_with_args_quotes_them(local_server):
    reply = run(local_server, command="echo", args=["it's", "$HOME"], bash=True)
    assert reply["stdout"] == "it's $HOME\n"


def test_ulimit_cpu_time_follows_timeout(local_server):
    reply = run(local_server, command="ulimit -t", timeout=7.2)
    assert reply["stdout"] == "8\n"
    reply = run(local_server, command="ulimit -t", timeout=7, ulimit_timeout=False)
    assert reply["stdout"] == "unlimited\n"
    reply = run(local_server, command="ulimit -t", timeout=0)
    assert reply["stdout"] == "unlimited\n"


def test_working_directory_rules(local_server):
    home = home_of(local_server)
    (home / "sub dir").mkdir(exist_ok=True)
    assert run(local_server, command="pwd")["stdout"] == f"{home}\n"
    assert (
        run(local_server, command="pwd", path="sub dir")["stdout"]
        == f"{home}/sub dir\n"
    )
    assert run(local_server, command="pwd", path="/tmp")["stdout"] == "/tmp\n"
    reply = run(local_server, command="pwd", path="sub dir", cwd="/")
    assert reply["stdout"] == "/\n"
    assert run(local_server, command="pwd", home="/tmp", path=".")["stdout"] == "/tmp\n"


def test_missing_directory_reports_program(local_server):
    reply = run(local_server, command="ls", path="no-such-dir", err_on_exit=False)
    assert is_error(reply)
    assert "was not able to run" in reply["error"]
    assert '"code":"ENOENT"' in reply["error"]
    assert '"syscall":"spawn ls"' in reply["error"]


def test_environment_is_merged(local_server):
    reply = run(
        local_server,
        command="printenv",
        args=["GREETING", "HOME", "COCALC_PROJECT_ID"],
        env={"GREETING": "hello world"},
    )
    lines = reply["stdout"].splitlines()
    assert lines == ["hello world", str(home_of(local_server)), local_server.project_id]


def test_debug_variables_are_removed(tmp_path):
    from tests.support.local_server import start_server

    server = start_server(
        tmp_path, environment={"DEBUG": "x", "NODE_ENV": "y", "KEEP_ME": "z"}
    )
    try:
        reply = run(server, command="env")
        names = {line.split("=", 1)[0] for line in reply["stdout"].splitlines()}
        assert "KEEP_ME" in names
        assert "DEBUG" not in names
        assert "NODE_ENV" not in names
        reply = run(server, command="printenv", args=["DEBUG"], env={"DEBUG": "mine"})
        assert reply["stdout"] == "mine\n"
    finally:
        server.process.stop()


def test_process_is_group_and_session_leader(local_server):
    reply = run(local_server, command="ps -o pid=,pgid=,sid= -p $$")
    pid, pgid, sid = reply["stdout"].split()
    assert pid == pgid == sid


def test_timeout_kills_whole_group(local_server):
    marker = f"child-{uuid.uuid4().hex}"
    started = time.monotonic()
    reply = run(local_server, command=f"sleep 60 & echo {marker}; wait", timeout=0.6)
    assert time.monotonic() - started < 5
    assert re.fullmatch(
        r"killed command 'bash /tmp/cocalc-[A-Za-z0-9]{6}/a\.sh'", reply["error"]
    )

    def sleeper_gone():
        return not any(
            "sleep" in (p.info["name"] or "")
            and p.info["cmdline"] == ["sleep", "60"]
            and os.getsid(p.pid) != os.getsid(0)
            for p in psutil.process_iter(["name", "cmdline"])
            if _safe_sid(p.pid) is not None
        )

    wait_until(sleeper_gone, timeout=5)


def _safe_sid(pid):
    try:
        return os.getsid(pid)
    except OSError:
        return None


def test_direct_mode_killed_text(local_server):
    reply = run(local_server, command="sleep", args=["30"], timeout=0.3)
    assert reply == {"error": "killed command 'sleep 30'"}


def test_max_output_truncation_suffix(local_server):
    reply = run(local_server, command="printf 0123456789", max_output=4)
    assert reply["stdout"] == "0123 (truncated at 4 characters)"
    reply = run(local_server, command="printf 0123", max_output=4)
    assert reply["stdout"] == "0123 (truncated at 4 characters)"
    reply = run(local_server, command="printf 012", max_output=4)
    assert reply["stdout"] == "012"


def test_max_output_counts_utf16_units(local_server):
    reply = run(local_server, command="printf", args=["é🚀ab"], max_output=3)
    assert reply["stdout"] == "é🚀 (truncated at 3 characters)"
    reply = run(local_server, command="printf", args=["é🚀ab"], max_output=2)
    assert reply["stdout"] == "é (truncated at 2 characters)"


def test_max_output_applies_per_stream(local_server):
    reply = run(local_server, command="printf abcdef; printf ghijkl >&2", max_output=3)
    assert reply["stdout"] == "abc (truncated at 3 characters)"
    assert reply["stderr"] == "ghi (truncated at 3 characters)"


def test_large_output_is_not_capped_by_default(local_server):
    reply = run(local_server, command="head -c 3000000 /dev/zero | tr '\\0' a")
    assert len(reply["stdout"]) == 3_000_000


def test_nonzero_exit_error_in_bash_mode(local_server):
    reply = run(local_server, command="echo oops >&2; exit 3")
    assert reply == {
        "error": "command 'echo oops >&2; exit 3' exited with nonzero code 3 "
        "-- stderr='oops\n'"
    }


def test_nonzero_exit_error_in_direct_mode(local_server):
    reply = run(local_server, command="ls", args=["/nope"])
    assert reply["error"].startswith(
        "command ''ls' (args=/nope)' exited with nonzero code 2 -- stderr='ls: "
    )


def test_quoted_stderr_cut_at_1024(local_server):
    reply = run(local_server, command="head -c 5000 /dev/zero | tr '\\0' e >&2; exit 1")
    quoted = reply["error"].split("stderr='", 1)[1][:-1]
    assert len(quoted) == 1024
    assert quoted.endswith("…")
    assert "truncated" not in reply["error"]


def test_err_on_exit_false_returns_output(local_server):
    reply = run(
        local_server, command="echo out; echo err >&2; exit 4", err_on_exit=False
    )
    assert reply == {
        "type": "blocking",
        "stdout": "out\n",
        "stderr": "err\n",
        "exit_code": 4,
    }


def test_program_not_found(local_server):
    reply = run(local_server, command="no-such-program-xyz")
    assert reply["error"].startswith(
        "command ''no-such-program-xyz' (args=)' exited with nonzero code 1 -- stderr='{"
    )
    assert '"errno":-2' in reply["error"]
    reply = run(local_server, command="no-such-program-xyz", err_on_exit=False)
    assert reply["error"].startswith(
        "command ''no-such-program-xyz' (args=)' was not able to run -- stderr='{"
    )


def test_signal_death_reads_as_exit_zero(local_server):
    reply = run(local_server, command="bash", args=["-c", "kill -9 $$"])
    assert reply == {"type": "blocking", "stdout": "", "stderr": "", "exit_code": 0}


def test_bad_options_give_clear_errors(local_server):
    assert "command" in run(local_server, args=["x"])["error"]
    assert "timeout" in run(local_server, command="true", timeout="soon")["error"]
    assert "max_output" in run(local_server, command="true", max_output=-1)["error"]
    reply = local_server.project("system.exec")
    assert "options object" in reply["error"]


def test_non_ascii_round_trip(local_server):
    text = "Grüße, 你好, Ωμέγα, 🚀"
    reply = run(local_server, command="echo", args=[text])
    assert reply["stdout"] == text + "\n"


def test_api_key_of_user_does_not_reach_processes(tmp_path):
    from tests.support.local_server import start_server

    canary = "sk-CANARY00000000000000"
    server = start_server(tmp_path, environment={"COCALC_API_KEY": canary})
    try:
        reply = run(server, command="env")
        assert canary not in reply["stdout"]
    finally:
        server.process.stop()


@pytest.mark.parametrize("count", [20])
def test_many_blocking_calls_at_once(local_server, count):
    from concurrent.futures import ThreadPoolExecutor

    def one(index):
        return run(local_server, command="echo", args=[str(index)])["stdout"]

    with ThreadPoolExecutor(8) as pool:
        outputs = list(pool.map(one, range(count)))
    assert outputs == [f"{index}\n" for index in range(count)]


def test_compute_server_in_options_is_rejected(local_server):
    reply = run(local_server, command="true", compute_server_id=2)
    assert reply == {
        "error": "Error: compute servers are not available on the local cocalc-magics "
        "server; leave out compute_server_id or send 0"
    }
    assert run(local_server, command="true", compute_server_id=0)["exit_code"] == 0
