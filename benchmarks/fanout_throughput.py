"""Wall time of a fan-out: ``sleep 1`` in 100 projects at concurrency 20 and 1.

A local server runs as a child process in a temporary data directory. The script
creates the projects through the hub's ``projects.createProject`` and starts them
once (``start_many``), so that both timed runs measure the exec path only. Then it
runs ``exec_many(..., "sleep 1")`` at concurrency 20 (goal: at most 6.5 s wall,
that is 5 rounds of 1 s plus overhead) and at concurrency 1 (the baseline: about
one second per project), and prints both times, their ratio, the ideal ratio and
the machine's core count.

Run from the repository root::

    python benchmarks/fanout_throughput.py [--projects 100] [--concurrency 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

GOAL_S = 6.5


def run(projects: int, concurrency: int, skip_baseline: bool) -> int:
    from cocalc_magics.api import Connection
    from cocalc_magics.fanout import exec_many, start_many
    from cocalc_magics.server import spawn_server_process

    with tempfile.TemporaryDirectory(prefix="fanout-bench-") as data_dir:
        server = spawn_server_process(Path(data_dir))
        try:
            connection = Connection(
                host=server.url, api_key=server.api_key, label="local server"
            )
            ids = [connection.create_project(f"bench {i}") for i in range(projects)]
            started = start_many(
                connection, ids, concurrency=concurrency, display="none"
            )
            if not started.ok:
                print(started, file=sys.stderr)
                return 1

            wall, peak_threads = timed(connection, ids, concurrency, exec_many)
            print(
                f"{projects} projects, sleep 1, concurrency {concurrency}: "
                f"{wall:.2f} s wall (goal <= {GOAL_S} s), "
                f"peak threads {peak_threads}"
            )
            if not skip_baseline:
                baseline, _ = timed(connection, ids, 1, exec_many)
                print(
                    f"{projects} projects, sleep 1, concurrency 1: "
                    f"{baseline:.2f} s wall"
                )
                ideal = min(concurrency, projects)
                print(
                    f"speed-up {baseline / wall:.1f}x (ideal {ideal}x at "
                    f"concurrency {concurrency})"
                )
            print(f"cores: {os.cpu_count()}")
            return 0 if wall <= GOAL_S else 2
        finally:
            server.stop()


def timed(connection, ids, concurrency, exec_many) -> tuple[float, int]:
    """Run ``sleep 1`` everywhere; return the wall time and the peak thread count."""
    peak = threading.active_count()
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.01):
            peak = max(peak, threading.active_count() - 1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.perf_counter()
    result = exec_many(
        connection, ids, "sleep 1", concurrency=concurrency, display="none"
    )
    wall = time.perf_counter() - began
    stop.set()
    sampler.join()
    if not result.ok:
        print(result.failed(), file=sys.stderr)
        raise SystemExit(1)
    return wall, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument(
        "--skip-baseline",
        action="store_true",
        help="do not run the concurrency 1 baseline (it takes about 1 s per project)",
    )
    options = parser.parse_args()
    return run(options.projects, options.concurrency, options.skip_baseline)


if __name__ == "__main__":
    sys.exit(main())
