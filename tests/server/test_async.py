"""Async exec jobs, their records and samples, and ``system.signal``."""

from __future__ import annotations

import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import psutil
import requests

from tests.support.local_server import is_error, raw_call, start_server, wait_until


def start_job(server, **options):
    reply = server.project("system.exec", {"async_call": True, **options})
    assert reply["type"] == "async", reply
    return reply


def poll(server, job_id, timeout_ms=30000, **options):
    return server.project(
        "system.exec", {"async_get": job_id, **options}, timeout_ms=timeout_ms
    )


def test_start_reply_fields(local_server):
    reply = start_job(local_server, command="sleep 0.2; echo hi")
    assert reply["status"] == "running"
    assert set(reply) == {
        "type",
        "job_id",
        "status",
        "start",
        "pid",
        "stdout",
        "stderr",
        "exit_code",
    }
    assert reply["stdout"] == ""
    assert reply["exit_code"] == 0
    assert abs(reply["start"] - time.time() * 1000) < 10_000
    uuid.UUID(reply["job_id"])


def test_poll_shows_cumulative_output_then_final(local_server):
    job = start_job(
        local_server, command="echo 1; sleep 0.8; echo 2; sleep 0.8; echo 3"
    )
    first = wait_until(
        lambda: (r := poll(local_server, job["job_id"]))["stdout"] == "1\n" and r
    )
    assert first["status"] == "running"
    assert "elapsed_s" not in first
    final = poll(local_server, job["job_id"], async_await=True)
    assert final["status"] == "completed"
    assert final["stdout"] == "1\n2\n3\n"
    assert final["exit_code"] == 0
    assert 1.0 < final["elapsed_s"] < 10
    assert final["pid"] == job["pid"]


def test_await_on_finished_job_is_immediate(local_server):
    job = start_job(local_server, command="true")
    poll(local_server, job["job_id"], async_await=True)
    started = time.monotonic()
    reply = poll(local_server, job["job_id"], async_await=True)
    assert reply["status"] == "completed"
    assert time.monotonic() - started < 1


def test_await_is_ended_only_by_bridge_timeout(local_server):
    job = start_job(local_server, command="sleep 3", timeout=20)
    started = time.monotonic()
    reply = poll(local_server, job["job_id"], async_await=True, timeout_ms=700)
    assert 0.6 < time.monotonic() - started < 2.5
    assert reply["error"].endswith("name='system.exec', code='408' ")
    again = poll(local_server, job["job_id"])
    assert again["status"] == "running"
    assert poll(local_server, job["job_id"], async_await=True)["status"] == "completed"


def test_stats_samples(local_server):
    script = "python3 -c 'x = bytearray(30_000_000)\nimport time\nend = time.time() + 2.6\nwhile time.time() < end: pass'"
    job = start_job(local_server, command=script, timeout=30)
    final = poll(local_server, job["job_id"], async_await=True, async_stats=True)
    stats = final["stats"]
    assert 2 <= len(stats) <= 4
    assert set(stats[0]) == {"timestamp", "mem_rss", "cpu_pct", "cpu_secs"}
    assert abs(stats[0]["timestamp"] - job["start"] - 1000) < 600
    assert stats[-1]["mem_rss"] > 25
    assert stats[-1]["cpu_secs"] > 0.8
    assert stats[-1]["cpu_pct"] > 30
    gaps = [b["timestamp"] - a["timestamp"] for a, b in pairwise(stats)]
    assert all(800 < gap < 1600 for gap in gaps)
    without = poll(local_server, job["job_id"])
    assert "stats" not in without


def test_short_job_has_no_stats(local_server):
    job = start_job(local_server, command="true")
    final = poll(local_server, job["job_id"], async_await=True, async_stats=True)
    assert "stats" not in final


def test_async_outcomes(local_server):
    cases = {
        "exit_nonzero_no_err": (
            {"command": "echo out; exit 3", "err_on_exit": False},
            {"status": "completed", "exit_code": 3, "stdout": "out\n"},
        ),
        "exit_nonzero_err": (
            {"command": "echo out; echo bad >&2; exit 3"},
            {"status": "error", "exit_code": 1, "stdout": "", "stderr": "bad\n"},
        ),
        "exit_nonzero_quiet": (
            {"command": "exit 3"},
            {"status": "error", "exit_code": 1, "stdout": "", "stderr": "No result"},
        ),
        "timeout": (
            {"command": "sleep", "args": ["20"], "timeout": 0.4},
            {
                "status": "error",
                "exit_code": 1,
                "stdout": "",
                "stderr": "killed command 'sleep 20'",
            },
        ),
        "signal_death": (
            {"command": "bash", "args": ["-c", "echo x; kill -9 $$"]},
            {"status": "completed", "exit_code": 0, "stdout": "x\n"},
        ),
    }
    for name, (options, expected) in cases.items():
        job = start_job(local_server, **options)
        final = poll(local_server, job["job_id"], async_await=True)
        for key, value in expected.items():
            assert final[key] == value, (name, key, final)


def test_async_spawn_failure(local_server):
    reply = start_job(local_server, command="no-such-program-xyz")
    assert "pid" not in reply
    final = poll(local_server, reply["job_id"])
    assert final["status"] == "error"
    assert final["exit_code"] == 1
    assert '"code":"ENOENT"' in final["stderr"]
    reply = start_job(local_server, command="no-such-program-xyz", err_on_exit=False)
    final = poll(local_server, reply["job_id"])
    assert "was not able to run" in final["stderr"]


def test_async_default_max_output(local_server):
    job = start_job(local_server, command="head -c 1100000 /dev/zero | tr '\\0' a")
    final = poll(local_server, job["job_id"], async_await=True)
    assert final["stdout"] == "a" * 1048576 + " (truncated at 1048576 characters)"


def test_unknown_job(local_server):
    reply = poll(local_server, "nope")
    assert reply == {"error": "Error: Async operation 'nope' does not exist."}


def test_many_jobs_at_once(local_server):
    jobs = [start_job(local_server, command=f"sleep 0.5; echo {i}") for i in range(30)]
    assert len({job["pid"] for job in jobs}) == 30

    def wait(job):
        return poll(local_server, job["job_id"], async_await=True)["stdout"]

    with ThreadPoolExecutor(10) as pool:
        outputs = list(pool.map(wait, jobs))
    assert outputs == [f"{i}\n" for i in range(30)]


def test_concurrent_long_polls_do_not_block_others(local_server):
    job = start_job(local_server, command="sleep 2")
    results = []

    def long_poll():
        results.append(poll(local_server, job["job_id"], async_await=True))

    threads = [threading.Thread(target=long_poll) for _ in range(8)]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    assert "now" in local_server.project("system.ping")
    assert time.monotonic() - started < 0.5
    for thread in threads:
        thread.join()
    assert [result["status"] for result in results] == ["completed"] * 8


def test_signal_negative_pid_kills_group(local_server):
    job = start_job(local_server, command="sleep 30 & sleep 30; wait", timeout=60)
    wait_until(lambda: len(psutil.Process(job["pid"]).children()) == 2)
    children = psutil.Process(job["pid"]).children()
    assert (
        local_server.project("system.signal", {"signal": 9, "pid": -job["pid"]}) is None
    )
    final = poll(local_server, job["job_id"], async_await=True)
    assert final["status"] == "completed"
    assert final["exit_code"] == 0
    wait_until(
        lambda: (
            not any(
                child.is_running() and child.status() != "zombie" for child in children
            )
        )
    )


def test_signal_pids_list(local_server):
    jobs = [start_job(local_server, command="sleep", args=["30"]) for _ in range(2)]
    reply = local_server.project(
        "system.signal", {"signal": 15, "pids": [job["pid"] for job in jobs]}
    )
    assert reply is None
    for job in jobs:
        final = poll(local_server, job["job_id"], async_await=True)
        assert final["status"] == "completed"


def test_signal_refuses_foreign_processes(local_server):
    reply = local_server.project("system.signal", {"signal": 0, "pid": os.getpid()})
    assert is_error(reply)
    assert "not a process of project" in reply["error"]
    reply = local_server.project("system.signal", {"signal": 0, "pid": -os.getpgid(0)})
    assert "not a process of project" in reply["error"]
    assert local_server.project("system.signal", {"signal": 9}) == {
        "error": "Error: system.signal needs 'pid' or 'pids'"
    }


def test_retention_limits_from_environment(tmp_path):
    server = start_server(
        tmp_path,
        environment={
            "COCALC_PROJECT_ASYNC_EXEC_CACHE_MAX": "3",
            "COCALC_PROJECT_ASYNC_EXEC_TTL_S": "1.5",
        },
    )
    try:
        jobs = [start_job(server, command="true") for _ in range(4)]
        assert is_error(poll(server, jobs[0]["job_id"]))
        assert poll(server, jobs[1]["job_id"])["status"] in ("running", "completed")

        # Reading a record resets its clock; an unread one expires.
        for _ in range(3):
            time.sleep(0.7)
            assert not is_error(poll(server, jobs[3]["job_id"]))
        assert poll(server, jobs[2]["job_id"]) == {
            "error": f"Error: Async operation '{jobs[2]['job_id']}' does not exist."
        }
    finally:
        server.process.stop()


def test_monitor_interval_ceiling_from_environment(tmp_path):
    server = start_server(
        tmp_path, environment={"COCALC_PROJECT_ASYNC_EXEC_MONITOR_INTERVAL_S": "1"}
    )
    try:
        job = start_job(server, command="sleep 8", timeout=30)
        final = poll(server, job["job_id"], async_await=True, async_stats=True)
        gaps = [b["timestamp"] - a["timestamp"] for a, b in pairwise(final["stats"])]
        assert len(final["stats"]) >= 6
        assert max(gaps) < 1600
    finally:
        server.process.stop()


def test_stop_loses_records_and_kills_jobs(tmp_path):
    server = start_server(tmp_path)
    try:
        job = start_job(server, command="sleep 30 & disown; sleep 30", timeout=60)
        pid = job["pid"]
        assert server.hub("projects.stop", {"project_id": server.project_id}) is None
        wait_until(
            lambda: (
                not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
            )
        )
        reply = poll(server, job["job_id"])
        assert reply == {
            "error": f"Error: Async operation '{job['job_id']}' does not exist."
        }
        leftovers = [
            p
            for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] == ["sleep", "30"]
            and _environ_has(p, server.project_id)
        ]
        assert leftovers == []
    finally:
        server.process.stop()


def _environ_has(process, project_id):
    try:
        return process.environ().get("COCALC_PROJECT_ID") == project_id
    except psutil.Error:
        return False


def test_pending_long_poll_ends_on_stop(tmp_path):
    server = start_server(tmp_path)
    try:
        job = start_job(server, command="sleep 30", timeout=60)
        session = requests.Session()
        results = []
        thread = threading.Thread(
            target=lambda: results.append(
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
                    session=session,
                )
            )
        )
        thread.start()
        time.sleep(0.3)
        server.hub("projects.stop", {"project_id": server.project_id})
        thread.join(10)
        assert results and results[0]["status"] == "error"
    finally:
        server.process.stop()


def test_server_stop_kills_job_processes(tmp_path):
    server = start_server(tmp_path)
    job = start_job(server, command="sleep", args=["45"], timeout=0)
    pid = job["pid"]
    server.process.stop()
    wait_until(
        lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    )
