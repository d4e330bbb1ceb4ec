"""End-to-end cost of ``%cocalc exec true`` against a raw ``requests`` POST.

Both run the same blocking ``system.exec`` of ``true`` on the same local server,
which runs in a child process (``spawn_server_process``) with its own temporary
data directory. The magic runs in a real ``InteractiveShell`` and goes through
parsing, expansion, the client, rendering and result storage. The baseline posts
the same JSON body with a kept-alive ``requests.Session``. Runs alternate between
the two (and which one goes first), and the script prints the median of each,
their ratio (magic / raw), and the machine's core count. The goal is a ratio of at
most 1.05.

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


def exec_body(project_id: str) -> dict:
    """Build the body that ``%cocalc exec true`` sends with default options."""
    return {
        "name": "system.exec",
        "args": [
            {
                "command": "true",
                "bash": True,
                "timeout": 50.0,
                "max_output": DEFAULT_MAX_OUTPUT,
                "err_on_exit": False,
            }
        ],
        "timeout": 55000,
        "project_id": project_id,
        "compute_server_id": 0,
    }


def measure(runs: int, server) -> tuple[list[float], list[float]]:
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
    body = exec_body(server.project_id)

    def run_magic() -> None:
        result = shell.run_line_magic("cocalc", "exec true")
        assert result.exit_code == 0

    def run_raw() -> None:
        reply = session.post(url, json=body, headers=headers, timeout=120).json()
        assert reply["exit_code"] == 0, reply

    for _ in range(10):
        run_magic()
        run_raw()

    magic_times, raw_times = [], []
    for index in range(runs):
        order = [(run_magic, magic_times), (run_raw, raw_times)]
        if index % 2:
            order.reverse()
        for function, times in order:
            started = time.perf_counter()
            function()
            times.append(time.perf_counter() - started)
    return magic_times, raw_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="runs of each (>= 200)")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="magic-overhead-") as data_dir:
        server = spawn_server_process(data_dir)
        try:
            magic_times, raw_times = measure(max(options.runs, 200), server)
        finally:
            server.stop()

    magic = statistics.median(magic_times)
    raw = statistics.median(raw_times)
    print(f"runs: {len(magic_times)} of each, alternating")
    print(f"%cocalc exec true: median {magic * 1000:.2f} ms")
    print(f"raw requests POST: median {raw * 1000:.2f} ms")
    print(f"ratio (magic / raw): {magic / raw:.3f} (goal <= 1.05)")
    print(f"cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
