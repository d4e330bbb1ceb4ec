"""Throughput of the local server: hub pings and blocking ``exec true`` per second.

The server runs as a child process (``spawn_server_process``) in a temporary data
directory. A few client threads, each with its own kept-alive ``http.client``
connection, send requests for a fixed time. Two baselines run in the same script:

- pings are compared with a bare tornado handler that returns ``{}`` (the HTTP
  floor of the framework on this machine);
- ``exec true`` is compared with ``asyncio.create_subprocess_exec("true")`` run
  back to back in this process (the process-start floor of this machine).

The script prints requests per second, the ratio to each baseline, the goals (at
least 1,000 pings/s and 100 execs/s) and the machine's core count.

Run from the repository root::

    python benchmarks/server_throughput.py [--seconds 3] [--threads 4]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from urllib.parse import urlsplit

PING_GOAL = 1000
EXEC_GOAL = 100


def bare_tornado() -> None:
    """Serve ``{}`` for every POST and print the port (the ping baseline)."""
    import tornado.httpserver
    import tornado.ioloop
    import tornado.netutil
    import tornado.web

    class Handler(tornado.web.RequestHandler):
        def post(self) -> None:
            self.set_header("Content-Type", "application/json")
            self.finish("{}")

    app = tornado.web.Application([(r"/.*", Handler)], log_function=lambda h: None)
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    tornado.httpserver.HTTPServer(app).add_sockets(sockets)
    print(sockets[0].getsockname()[1], flush=True)
    tornado.ioloop.IOLoop.current().start()


def hammer(
    url: str, key: str, path: str, body: dict, seconds: float, threads: int
) -> float:
    """Send the same request from several kept-alive connections; return requests/s."""
    address = urlsplit(url)
    payload = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    counts = [0] * threads
    failures: list[str] = []
    deadline = time.monotonic() + seconds

    def worker(index: int) -> None:
        connection = http.client.HTTPConnection(address.hostname, address.port)
        while time.monotonic() < deadline:
            connection.request("POST", path, payload, headers)
            response = connection.getresponse()
            data = response.read()
            if response.status != 200 or b'"error"' in data:
                failures.append(data[:200].decode(errors="replace"))
                return
            counts[index] += 1
        connection.close()

    started = time.monotonic()
    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    elapsed = time.monotonic() - started
    if failures:
        raise RuntimeError(f"a request failed: {failures[0]}")
    return sum(counts) / elapsed


def process_start_floor(seconds: float) -> float:
    async def run() -> float:
        count = 0
        deadline = time.monotonic() + seconds
        started = time.monotonic()
        while time.monotonic() < deadline:
            process = await asyncio.create_subprocess_exec(
                "true",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
            await process.communicate()
            count += 1
        return count / (time.monotonic() - started)

    return asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="duration of each run"
    )
    parser.add_argument("--threads", type=int, default=4, help="client threads")
    parser.add_argument("--bare-tornado", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.bare_tornado:
        bare_tornado()
        return 0

    from cocalc_magics.server import spawn_server_process

    baseline = subprocess.Popen(
        [sys.executable, __file__, "--bare-tornado"], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(baseline.stdout.readline())
        bare = hammer(
            f"http://127.0.0.1:{port}",
            "none",
            "/",
            {},
            options.seconds,
            options.threads,
        )
    finally:
        baseline.kill()
        baseline.wait()

    with tempfile.TemporaryDirectory() as data_dir:
        server = spawn_server_process(data_dir)
        try:
            exec_body = {
                "name": "system.exec",
                "project_id": server.project_id,
                "args": [{"command": "true", "timeout": 10}],
            }
            # The first project call starts the project; keep it out of the figure.
            hammer(server.url, server.api_key, "/api/conat/project", exec_body, 0.2, 1)
            pings = hammer(
                server.url,
                server.api_key,
                "/api/conat/hub",
                {"name": "system.ping"},
                options.seconds,
                options.threads,
            )
            execs = hammer(
                server.url,
                server.api_key,
                "/api/conat/project",
                exec_body,
                options.seconds,
                options.threads,
            )
        finally:
            server.stop()
    floor = process_start_floor(options.seconds)

    print(f"cores: {os.cpu_count()}  client threads: {options.threads}")
    print(
        f"hub ping:   {pings:8.0f} requests/s  bare tornado {bare:8.0f}/s  "
        f"ratio {pings / bare:.2f}  goal >= {PING_GOAL}: "
        f"{'met' if pings >= PING_GOAL else 'NOT met'}"
    )
    print(
        f"exec true:  {execs:8.0f} requests/s  bare process start {floor:6.0f}/s  "
        f"ratio {execs / floor:.2f}  goal >= {EXEC_GOAL}: "
        f"{'met' if execs >= EXEC_GOAL else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
