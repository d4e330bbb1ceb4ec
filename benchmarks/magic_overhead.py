"""End-to-end cost of ``%cocalc exec true`` against raw ``requests`` POSTs.

The magic runs every command as an async job (``BLOCKING_MAX_TIMEOUT_S`` is 0):
one ``system.exec`` with ``async_call``, then long-polls until the job ends,
with the project-state check of the first command and the job-ledger writes.
Two baselines run against the same local server (a child process from
``spawn_server_process`` with its own temporary data directories):

- ``blocking``: one blocking ``system.exec`` of ``true``, the cheapest way to
  run the command at all;
- ``async``: the same async lifecycle as the magic, done raw: the start POST,
  then ``async_get`` with ``async_await`` until the job is completed.

Both POST the JSON bodies with a kept-alive ``requests.Session``. A third run,
``client``, does the async lifecycle through this package's ``Connection``
(``exec_async``, then ``async_get`` with waiting). The client reads proxy settings
from the environment more cheaply than a plain session does, so its requests
cost a little less than raw ones; magic / client is the cost of the magic's own
work (parsing, the job layer, the ledger, display) alone. The magic runs
in a real ``InteractiveShell`` and goes through parsing, expansion, the client,
the job layer, rendering and result storage. Runs alternate between the four
(rotating which goes first), and the script prints the median of each, the
ratios magic / async, magic / blocking and magic / client, and the machine's core
count. The goal is a ratio of at most 1.05 against the raw exec of the same
lifecycle.

Run from the repository root::

    python benchmarks/magic_overhead.py [--runs 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import requests
from IPython.core.interactiveshell import InteractiveShell

from cocalc_magics.api import Connection
from cocalc_magics.magics.config import DEFAULT_MAX_OUTPUT
from cocalc_magics.server import spawn_server_process


def exec_body(project_id: str, *, async_call: bool = False) -> dict:
    """Build the exec body of ``true`` with the magic's default options."""
    options = {
        "command": "true",
        "bash": True,
        "timeout": 50.0,
        "max_output": DEFAULT_MAX_OUTPUT,
        "err_on_exit": False,
    }
    if async_call:
        options["async_call"] = True
    return {
        "name": "system.exec",
        "args": [options],
        "timeout": 55000 if not async_call else 15000,
        "project_id": project_id,
        "compute_server_id": 0,
    }


def await_body(project_id: str, job_id: str) -> dict:
    """Build the long-poll that waits (up to 1 s) for the job to end."""
    return {
        "name": "system.exec",
        "args": [{"async_get": job_id, "async_stats": True, "async_await": True}],
        "timeout": 1000,
        "project_id": project_id,
        "compute_server_id": 0,
    }


def measure(runs: int, server) -> dict[str, list[float]]:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "cocalc_magics")
    magics = shell.magics_manager.registry["CoCalcMagics"]
    magics.session.replace(
        Connection(
            host=server.url, api_key=server.api_key, project_id=server.project_id
        )
    )

    session = requests.Session()
    url = f"{server.url}/api/conat/project"
    headers = {"Authorization": f"Bearer {server.api_key}"}
    blocking_body = exec_body(server.project_id)
    start_body = exec_body(server.project_id, async_call=True)

    def run_magic() -> None:
        result = shell.run_line_magic("cocalc", "exec true")
        assert result.exit_code == 0

    def run_blocking() -> None:
        reply = session.post(url, json=blocking_body, headers=headers, timeout=120)
        assert reply.json()["exit_code"] == 0, reply.text

    def run_async() -> None:
        reply = session.post(url, json=start_body, headers=headers, timeout=120)
        record = reply.json()
        job_id = record["job_id"]
        while record.get("status") == "running":
            body = await_body(server.project_id, job_id)
            reply = session.post(url, json=body, headers=headers, timeout=120)
            record = reply.json()
        assert record["exit_code"] == 0, record

    client = Connection(
        host=server.url, api_key=server.api_key, project_id=server.project_id
    )

    def run_client() -> None:
        record = client.exec_async(
            "true", bash=True, timeout=50.0, max_output=DEFAULT_MAX_OUTPUT
        )
        while record.running:
            record = client.async_get(
                record.job_id, wait=True, stats=True, wait_timeout=1.0
            )
        assert record.exit_code == 0, record

    functions = {
        "magic": run_magic,
        "blocking": run_blocking,
        "async": run_async,
        "client": run_client,
    }
    for _ in range(10):
        for function in functions.values():
            function()

    times: dict[str, list[float]] = {name: [] for name in functions}
    names = list(functions)
    for index in range(runs):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            functions[name]()
            times[name].append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="runs of each (>= 200)")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="magic-overhead-") as data_dir:
        # The job ledger of the magic goes to a directory of this run.
        os.environ["COCALC_MAGICS_DATA_DIR"] = os.path.join(data_dir, "ledger")
        server = spawn_server_process(os.path.join(data_dir, "server"))
        try:
            times = measure(max(options.runs, 200), server)
        finally:
            server.stop()

    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"runs: {len(times['magic'])} of each, alternating")
    print(f"%cocalc exec true (async job): median {medians['magic'] * 1000:.2f} ms")
    print(f"raw blocking exec POST:        median {medians['blocking'] * 1000:.2f} ms")
    print(f"raw async exec + async_await:  median {medians['async'] * 1000:.2f} ms")
    print(f"Connection exec_async + wait:  median {medians['client'] * 1000:.2f} ms")
    print(
        f"ratio magic / raw async lifecycle: {medians['magic'] / medians['async']:.3f}"
        " (goal <= 1.05)"
    )
    print(
        f"ratio magic / raw blocking exec:   {medians['magic'] / medians['blocking']:.3f}"
    )
    print(
        f"ratio magic / Connection lifecycle: {medians['magic'] / medians['client']:.3f}"
    )
    print(f"cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
