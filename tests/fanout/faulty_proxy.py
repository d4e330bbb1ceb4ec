"""A loopback HTTP proxy in front of a real local server that misbehaves on request.

Each POST is passed to ``decide(request)``. For a returned :class:`Fault` the proxy
sends the response itself (an HTTP status with a body, or an error envelope), and None
forwards the request to the upstream server unchanged. Every request is recorded
with its arrival time. Responses carry ``Connection: close``, so that stopping the
proxy (``pause``) makes new requests fail with a refused connection, as an
unreachable site does, rather than on a stale kept-alive socket.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests


@dataclass
class Fault:
    """A response the proxy sends instead of forwarding the request."""

    status: int = 200
    body: str = ""
    content_type: str = "application/json"

    @classmethod
    def envelope(cls, text: str) -> Fault:
        """CoCalc's error envelope ``{"error": text}`` with status 200."""
        return cls(200, json.dumps({"error": text}))

    @classmethod
    def http(cls, status: int) -> Fault:
        """A load balancer's HTML error page."""
        return cls(status, f"<html><body><h1>{status}</h1></body></html>", "text/html")


@dataclass
class Seen:
    """One request that reached the proxy."""

    at: float
    endpoint: str
    name: str | None
    project_id: str | None
    faulted: bool
    body: dict


class FaultyProxy:
    """Forward to *upstream* except where *decide* returns a :class:`Fault`."""

    def __init__(self, upstream: str, decide: Callable[[Seen, dict], Fault | None]):
        self.upstream = upstream
        self.decide = decide
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self.session = requests.Session()
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultyProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                proxy.handle(self)

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def pause(self, seconds: float) -> None:
        """Stop listening for *seconds* in a background thread, then listen again."""

        def outage() -> None:
            self.stop()
            time.sleep(seconds)
            self.start()

        threading.Thread(target=outage, daemon=True).start()

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        body = json.loads(raw or b"{}")
        endpoint = handler.path.rsplit("/", 1)[-1]
        seen = Seen(
            time.monotonic(),
            endpoint,
            body.get("name"),
            body.get("project_id"),
            False,
            body,
        )
        with self.lock:
            fault = self.decide(seen, body)
            seen.faulted = fault is not None
            self.seen.append(seen)

        if fault is None:
            response = self.session.post(
                f"{self.upstream}{handler.path}",
                data=raw,
                headers={
                    "Content-Type": "application/json",
                    "Authorization": handler.headers.get("Authorization", ""),
                },
                timeout=120,
            )
            status, payload, kind = (
                response.status_code,
                response.content,
                "application/json",
            )
        else:
            status, payload, kind = (
                fault.status,
                fault.body.encode(),
                fault.content_type,
            )

        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(payload)))
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(payload)
        handler.close_connection = True

    def requests_for(self, name: str) -> list[Seen]:
        with self.lock:
            return [seen for seen in self.seen if seen.name == name]
