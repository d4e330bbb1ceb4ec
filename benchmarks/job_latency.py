"""How fast a job's result reaches the caller: long-poll against 1 s polling, and
short commands on the blocking path against the async path.

Part 1 runs ``sleep S; date +%s.%N`` jobs (S varies so that the end falls at
every phase of a poll cycle) and measures, for each, the delay from the moment
the job printed its end time to the moment the caller has the final record:

- long-poll: :func:`cocalc_magics.jobs.follow` (long-polls of 1-2 s, the path
  the magics use);
- 1 s polling: a plain ``async_get`` every second, the baseline.

The goal is a long-poll median of at most 50 ms. Part 2 runs ``echo hi`` with a
blocking ``Connection.exec`` and on the async path (start, ledger entry, follow)
alternately, and prints the median of each and their ratio.

The local server runs in a child process on loopback, so it does not compete
with the client for the GIL; the job ledger goes to a temporary directory. Run
from the repository root::

    python benchmarks/job_latency.py [--jobs 20] [--calls 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

END_SCRIPT = "sleep {seconds}; date +%s.%N"


def end_delay(job_stdout: str, received: float) -> float:
    """Seconds from the end time the job printed to *received* (both epoch)."""
    return received - float(job_stdout.strip().splitlines()[-1])


def measure_long_poll(connection, ledger, seconds: float) -> float:
    from cocalc_magics.jobs import Job, follow

    job = Job.start(
        connection, END_SCRIPT.format(seconds=seconds), ledger=ledger, timeout=30
    )
    follow(job)
    return end_delay(job.stdout, time.time())


def measure_polling(connection, seconds: float, interval: float = 1.0) -> float:
    record = connection.exec_async(END_SCRIPT.format(seconds=seconds), timeout=30)
    while True:
        time.sleep(interval)
        record = connection.async_get(record.job_id)
        if not record.running:
            return end_delay(record.stdout, time.time())


def measure_short(connection, ledger) -> tuple[float, float]:
    from cocalc_magics.jobs import Job, follow

    started = time.perf_counter()
    connection.exec("echo hi", timeout=10)
    blocking = time.perf_counter() - started

    started = time.perf_counter()
    job = Job.start(connection, "echo hi", ledger=ledger, timeout=10)
    follow(job)
    asynchronous = time.perf_counter() - started
    assert job.stdout == "hi\n", job.stdout
    return blocking, asynchronous


def run(jobs: int, calls: int) -> dict:
    from cocalc_magics.api import Connection
    from cocalc_magics.jobs import JobLedger
    from cocalc_magics.server import spawn_server_process

    with tempfile.TemporaryDirectory() as scratch:
        server = spawn_server_process(Path(scratch) / "server")
        try:
            connection = Connection(
                host=server.url, api_key=server.api_key, project_id=server.project_id
            )
            ledger = JobLedger(Path(scratch) / "jobs.sqlite3")
            long_poll, polling = [], []
            for index in range(jobs):
                seconds = round(0.3 + 0.9 * index / max(jobs - 1, 1), 3)
                long_poll.append(measure_long_poll(connection, ledger, seconds))
                polling.append(measure_polling(connection, seconds))

            measure_short(connection, ledger)  # warm-up
            blocking, asynchronous = [], []
            for _ in range(calls):
                first, second = measure_short(connection, ledger)
                blocking.append(first)
                asynchronous.append(second)
            connection.close()
        finally:
            server.stop()

    return {
        "long_poll": statistics.median(long_poll),
        "long_poll_max": max(long_poll),
        "polling": statistics.median(polling),
        "polling_max": max(polling),
        "blocking": statistics.median(blocking),
        "async": statistics.median(asynchronous),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20, help="jobs per method (part 1)")
    parser.add_argument("--calls", type=int, default=40, help="short commands (part 2)")
    options = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    figures = run(options.jobs, options.calls)
    milliseconds = {name: value * 1000 for name, value in figures.items()}
    print(f"cores: {os.cpu_count()}")
    print(
        f"end-to-result delay, median of {options.jobs} jobs: "
        f"long-poll {milliseconds['long_poll']:.1f} ms "
        f"(max {milliseconds['long_poll_max']:.1f}), "
        f"1 s polling {milliseconds['polling']:.1f} ms "
        f"(max {milliseconds['polling_max']:.1f}), "
        f"ratio {figures['long_poll'] / figures['polling']:.3f}"
    )
    goal = "met" if milliseconds["long_poll"] <= 50 else "NOT met"
    print(f"goal long-poll median <= 50 ms: {goal}")
    print(
        f"short command (echo hi), median of {options.calls}: "
        f"blocking {milliseconds['blocking']:.1f} ms, "
        f"async path {milliseconds['async']:.1f} ms, "
        f"ratio {figures['async'] / figures['blocking']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
