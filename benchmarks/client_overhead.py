"""Per-call overhead of ``Connection.ping()`` against a raw ``requests`` POST.

Both clients call the same loopback server, which runs in a child process so that
it does not compete with the clients for the GIL. Calls alternate between the two
clients (and which one goes first), and the script prints the median time of each,
their ratio (client / raw), and the machine's core count. The goal is a ratio of at
most 1.05.

Run from the repository root::

    python benchmarks/client_overhead.py [--calls 300]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_KEY = "sk-BENCHMARK-000000000000"
PROJECT_ID = "11111111-2222-3333-4444-555555555555"


class _PingHandler(BaseHTTPRequestHandler):
    """Replies to every POST with ``{"now": <ms>}`` on a kept-alive connection."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"now": int(time.time() * 1000)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        pass


def serve() -> None:
    """Run the ping server and print its port on stdout."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PingHandler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


def start_server() -> tuple[subprocess.Popen, str]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
    )
    port = int(child.stdout.readline())
    return child, f"http://127.0.0.1:{port}"


def measure(calls: int, warmup: int) -> dict:
    import requests

    from cocalc_magics.api import Connection

    child, url = start_server()
    try:
        client = Connection(host=url, api_key=API_KEY, project_id=PROJECT_ID)
        raw = requests.Session()
        raw_url = f"{url}/api/conat/project"
        raw_body = {
            "name": "system.ping",
            "args": [],
            "timeout": 15000,
            "project_id": PROJECT_ID,
            "compute_server_id": 0,
        }
        raw_headers = {"Authorization": f"Bearer {API_KEY}"}

        def raw_ping() -> None:
            response = raw.post(
                raw_url, json=raw_body, headers=raw_headers, timeout=(5, 165)
            )
            response.raise_for_status()
            response.json()

        timings: dict[str, list[float]] = {"client": [], "raw": []}
        runners = {"client": client.ping, "raw": raw_ping}
        for index in range(warmup + calls):
            order = ("client", "raw") if index % 2 == 0 else ("raw", "client")
            for name in order:
                started = time.perf_counter()
                runners[name]()
                elapsed = time.perf_counter() - started
                if index >= warmup:
                    timings[name].append(elapsed)
        client.close()
        raw.close()
    finally:
        child.terminate()
        child.wait(timeout=10)
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--calls", type=int, default=300, help="measured calls per client"
    )
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured calls first")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        serve()
        return 0
    if options.calls < 200:
        parser.error("--calls must be at least 200 for a stable median")

    timings = measure(options.calls, options.warmup)
    client = statistics.median(timings["client"])
    raw = statistics.median(timings["raw"])
    ratio = client / raw
    print(f"cores: {os.cpu_count()}")
    print(
        f"calls per client: {options.calls} "
        f"(interleaved, after {options.warmup} warm-up calls)"
    )
    print(f"raw requests POST median: {raw * 1e6:.0f} us")
    print(f"Connection.ping median:   {client * 1e6:.0f} us")
    print(f"ratio client/raw: {ratio:.3f} (goal <= 1.05)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
