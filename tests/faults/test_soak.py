"""Soak: 1,000 mixed calls from the magics leave no threads, files or memory behind.

The mix, per 100 calls: 45 ``%cocalc exec`` (each an async job followed to its
end), 10 ``%cocalc exec --bg`` (a background job, then waited for), 1 remote
kernel run (``%%cocalc_exec --kernel python3``, the slow one: about 1 s each),
20 hub calls (``%cocalc status``, ``%cocalc call projects.state``) and 24 other
project calls (``%cocalc ping``, ``%cocalc ls``, ``%cocalc call system.version``).

A warm-up round of 200 calls comes first, so that pools, caches and the kernel
pool of the server are full before the first measurement. Then both processes,
this one and the server child, are measured: threads, open file descriptors and
resident memory, before and after the 1,000 calls.
"""

from __future__ import annotations

import gc
import itertools
import threading

import psutil
import pytest
from IPython.utils.capture import capture_output

from tests.faults.conftest import _SCAN, register_server
from tests.support.local_server import start_server

MIX = (
    ["exec"] * 45
    + ["background"] * 10
    + ["kernel"]
    + ["status", "state"] * 10
    + ["ping", "ls", "version"] * 8
)
assert len(MIX) == 100

# Growth allowed after the warm-up. Memory gets room for allocator noise and the
# growth of SQLite's page cache; a leak of one object per call would pass these
# only if the object were under about 10 kB.
MAX_THREAD_GROWTH = 2
MAX_FD_GROWTH = 8
MAX_CLIENT_RSS_GROWTH_MB = 40
MAX_SERVER_RSS_GROWTH_MB = 40


@pytest.fixture(scope="module")
def soak_server(tmp_path_factory):
    server = register_server(start_server(tmp_path_factory.mktemp("soak-server")))
    try:
        yield server
    finally:
        server.process.stop()


def lines_for(kind: str, server) -> str:
    return {
        "exec": "%cocalc exec echo {n}",
        "background": "%cocalc exec --bg echo {n}",
        # Kernel code is sent without {expression} expansion.
        "kernel": "%%cocalc_exec --kernel python3\nsum(range(100))",
        "status": "%cocalc status",
        "state": '%cocalc call projects.state \'{"project_id": "'
        + server.project_id
        + "\"}'",
        "ping": "%cocalc ping",
        "ls": "%cocalc ls",
        "version": "%cocalc call system.version",
    }[kind]


def run_mix(shell, server, calls: int) -> None:
    """Run ``calls`` cells of the mix; fail on the first cell that fails."""
    from cocalc_magics.jobs import stop_watchers

    for number, kind in zip(range(calls), itertools.cycle(MIX)):
        shell.user_ns["n"] = number
        source = lines_for(kind, server)
        with capture_output() as captured:
            result = shell.run_cell(source)
        assert result.success, (source, captured.stdout, result.error_in_exec)
        if kind == "background":
            shell.user_ns["_cocalc"].wait()
        if number % 50 == 0:
            _SCAN.add(f"soak {kind} stdout", captured.stdout)
    stop_watchers()


def measure(process: psutil.Process) -> dict[str, float]:
    return {
        "threads": process.num_threads(),
        "fds": process.num_fds(),
        "rss_mb": process.memory_info().rss / 2**20,
    }


def test_thousand_mixed_calls_leak_nothing(shell, magics, soak_server):
    from cocalc_magics.api import Connection

    magics.session.replace(
        Connection(
            host=soak_server.url,
            api_key=soak_server.api_key,
            project_id=soak_server.project_id,
        )
    )
    client = psutil.Process()
    server = psutil.Process(soak_server.process.pid)

    run_mix(shell, soak_server, 200)
    gc.collect()
    client_before, server_before = measure(client), measure(server)
    python_threads_before = threading.active_count()

    run_mix(shell, soak_server, 1000)
    gc.collect()
    client_after, server_after = measure(client), measure(server)

    report = f"client {client_before} -> {client_after}; server {server_before} -> {server_after}"
    print(report)
    assert threading.active_count() <= python_threads_before + MAX_THREAD_GROWTH, report
    for before, after, rss_limit in (
        (client_before, client_after, MAX_CLIENT_RSS_GROWTH_MB),
        (server_before, server_after, MAX_SERVER_RSS_GROWTH_MB),
    ):
        assert after["threads"] <= before["threads"] + MAX_THREAD_GROWTH, report
        assert after["fds"] <= before["fds"] + MAX_FD_GROWTH, report
        assert after["rss_mb"] <= before["rss_mb"] + rss_limit, report
