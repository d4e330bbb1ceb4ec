"""A scriptable stand-in for CoCalc's HTTP API, on a real loopback socket.

:class:`FakeCoCalc` listens on 127.0.0.1, optionally with TLS, and serves
``POST {base_path}/api/conat/hub`` and ``POST {base_path}/api/conat/project``. It
records every request. It replies to each call from a script, from a handler, or
from a default that follows CoCalc's wire rules (authentication messages, error
envelopes, ``system.ping``, ``system.test``, ``projects.state`` ...). Any other path
gets a 404 HTML page, like CoCalc's web framework.

Usage::

    with FakeCoCalc() as fake:
        fake.script("system.exec", {"type": "blocking", "stdout": "hi\\n",
                                    "stderr": "", "exit_code": 0})
        fake.script("system.ping", Reply.error("timeout - callHub: ... code='503' "),
                    {"now": 1})          # first a 503 envelope, then success
        fake.on("system.listing", lambda request: [{"name": request.args[0]["path"]}])
        ... use fake.url, fake.api_key, fake.project_id ...
        assert fake.requests[0].json["args"][0]["err_on_exit"] is False

Scripted replies for a method are used in order and the last one repeats. A reply is
either a JSON value, sent with status 200, or a :class:`Reply`. ``Reply.json(None)``
sends ``null``. A Reply can also set the status, headers, a raw body, a delay, a
dropped connection, or a body cut off before its declared length. The method name
``"*"`` scripts every method. ``endpoint="hub"`` or ``"project"`` limits a script to
one endpoint.

Identities: the account key :attr:`FakeCoCalc.api_key` may use every project in
:attr:`FakeCoCalc.projects`; keys in ``project_keys`` are project-scoped and the hub
rejects them with CoCalc's "must be signed in" message.

:class:`ConnectProxy` is a tiny HTTP CONNECT proxy on loopback that records the
targets it was asked to reach. :func:`make_tls_files` makes a throwaway CA and a
server certificate for 127.0.0.1 with ``trustme``.
"""

from __future__ import annotations

import base64
import json
import select
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = [
    "ACCOUNT_ID",
    "API_KEY",
    "PROJECT_ID",
    "ConnectProxy",
    "FakeCoCalc",
    "RecordedRequest",
    "Reply",
    "TLSFiles",
    "make_tls_files",
]

PROJECT_ID = "11111111-2222-3333-4444-555555555555"
ACCOUNT_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
API_KEY = "sk-TESTKEY-000000000000"
MAX_BODY_BYTES = 1024 * 1024

_NOT_FOUND_PAGE = (
    "<!DOCTYPE html><html><head><title>404: This page could not be found</title>"
    "<style>body{color:#000}</style></head><body><div><h1>404</h1>"
    "<h2>This page could not be found.</h2></div></body></html>"
)


@dataclass
class Reply:
    """One scripted reply.

    Attributes
    ----------
    value : Any
        JSON value of the body, used when ``body`` is None.
    status : int
        HTTP status.
    headers : dict
        Extra response headers.
    body : bytes or str, optional
        Raw body sent instead of ``value``.
    content_type : str
        Content type of the body.
    delay : float
        Seconds to wait before replying.
    drop : bool
        Close the connection without sending anything.
    cut_after : int, optional
        Declare the full length but send only this many body bytes, then close.
    """

    value: Any = None
    status: int = 200
    headers: dict = field(default_factory=dict)
    body: bytes | str | None = None
    content_type: str = "application/json"
    delay: float = 0.0
    drop: bool = False
    cut_after: int | None = None

    @classmethod
    def json(cls, value: Any, **kw) -> Reply:
        """Reply with a JSON value, ``None`` included."""
        return cls(value=value, **kw)

    @classmethod
    def error(cls, text: str, **kw) -> Reply:
        """Reply with CoCalc's error envelope ``{"error": text}``."""
        return cls(value={"error": text}, **kw)

    @classmethod
    def html(cls, status: int, page: str, **kw) -> Reply:
        """Reply with an HTML page, like a proxy or the web framework."""
        return cls(
            status=status, body=page, content_type="text/html; charset=utf-8", **kw
        )

    @classmethod
    def text(cls, status: int, text: str, **kw) -> Reply:
        """Reply with a plain-text body."""
        return cls(
            status=status, body=text, content_type="text/plain; charset=utf-8", **kw
        )

    @classmethod
    def dropped(cls, **kw) -> Reply:
        """Close the connection without replying."""
        return cls(drop=True, **kw)

    def encoded_body(self) -> bytes:
        if self.body is None:
            return json.dumps(self.value).encode("utf-8")
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return self.body


@dataclass
class RecordedRequest:
    """A request as the fake server received it."""

    method: str
    path: str
    endpoint: str | None
    headers: dict[str, str]
    body: bytes
    json: Any
    arrived: float
    arrived_monotonic: float

    @property
    def name(self) -> str | None:
        """The API method name from the body, if any."""
        return self.json.get("name") if isinstance(self.json, dict) else None

    @property
    def args(self) -> Any:
        return self.json.get("args") if isinstance(self.json, dict) else None

    @property
    def timeout(self) -> Any:
        """The bridge timeout in milliseconds, as sent."""
        return self.json.get("timeout") if isinstance(self.json, dict) else None

    def header(self, name: str) -> str | None:
        """Return a header by case-insensitive name."""
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


Handler = Callable[[RecordedRequest], Any]


class FakeCoCalc:
    """A loopback CoCalc API server for tests; see the module docstring.

    Parameters
    ----------
    api_key : str
        The account key.
    project_id : str
        The default project, a collaborator project of the account.
    project_keys : dict, optional
        Project-scoped keys mapped to their project id.
    base_path : str
        Path prefix of the site, for example ``"/cocalc"``.
    tls : TLSFiles, optional
        Serve HTTPS with this certificate.
    """

    def __init__(
        self,
        *,
        api_key: str = API_KEY,
        project_id: str = PROJECT_ID,
        account_id: str = ACCOUNT_ID,
        project_keys: dict[str, str] | None = None,
        base_path: str = "",
        tls: TLSFiles | None = None,
    ):
        self.api_key = api_key
        self.project_id = project_id
        self.account_id = account_id
        self.projects = {project_id}
        self.project_keys = dict(project_keys or {})
        self.base_path = base_path.rstrip("/")
        self.requests: list[RecordedRequest] = []
        self._scripts: dict[tuple[str | None, str], list] = {}
        self._handlers: dict[tuple[str | None, str], Handler] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ssl_context = None
        if tls is not None:
            self._ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ssl_context.load_cert_chain(tls.server_cert, tls.server_key)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # Lifetime.

    def start(self) -> FakeCoCalc:
        self._server = _Server(("127.0.0.1", 0), _RequestHandler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeCoCalc:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Site URL including the base path, e.g. ``http://127.0.0.1:PORT/cocalc``."""
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}{self.base_path}"

    # Scripting.

    def script(self, name: str, *replies: Any, endpoint: str | None = None) -> None:
        """Queue *replies* for method *name*; the last one repeats."""
        if not replies:
            raise ValueError("script() needs at least one reply")
        with self._lock:
            self._scripts[(endpoint, name)] = list(replies)

    def on(self, name: str, handler: Handler, *, endpoint: str | None = None) -> None:
        """Reply to method *name* with ``handler(request)``: a JSON value or a Reply."""
        with self._lock:
            self._handlers[(endpoint, name)] = handler

    def clear(self) -> None:
        """Forget scripts, handlers and recorded requests."""
        with self._lock:
            self._scripts.clear()
            self._handlers.clear()
            self.requests.clear()

    def requests_for(self, name: str) -> list[RecordedRequest]:
        """Return the recorded requests whose body names method *name*."""
        with self._lock:
            return [r for r in self.requests if r.name == name]

    # Answering.

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _scripted(self, endpoint: str, name: str) -> tuple[bool, Any]:
        with self._lock:
            for key in ((endpoint, name), (None, name), (endpoint, "*"), (None, "*")):
                queue = self._scripts.get(key)
                if queue:
                    return True, queue.pop(0) if len(queue) > 1 else queue[0]
                handler = self._handlers.get(key)
                if handler is not None:
                    return True, handler
        return False, None

    def answer(self, request: RecordedRequest) -> Reply:
        """Return the reply for *request*: script, handler, or CoCalc-like default."""
        if request.endpoint is None:
            return Reply.html(404, _NOT_FOUND_PAGE)
        if len(request.body) > MAX_BODY_BYTES:
            return Reply.text(413, "Body exceeded 1mb limit")

        body = request.json
        if (
            request.body
            and body is None
            and "json" in (request.header("Content-Type") or "")
        ):
            return Reply.text(400, "Invalid JSON")
        if not isinstance(body, dict) or "json" not in (
            request.header("Content-Type") or ""
        ):
            body = {}

        found, reply = self._scripted(request.endpoint, body.get("name", ""))
        if found:
            if callable(reply) and not isinstance(reply, Reply):
                reply = reply(request)
            return reply if isinstance(reply, Reply) else Reply.json(reply)
        return Reply.json(self._default_answer(request, body))

    def _default_answer(self, request: RecordedRequest, body: dict) -> Any:
        auth_error, key_project = self._authenticate(request)
        if auth_error:
            return {"error": auth_error}

        name = body.get("name")
        if request.endpoint == "project":
            target = body.get("project_id", key_project)
            if key_project and target != key_project:
                return {
                    "error": "project specific api key must match requested project"
                }
            if target is None:
                return {
                    "error": "must specify project_id or use project-specific api key"
                }
            if target not in self.projects:
                return {"error": "user must be a collaborator on the project"}
            return _default_project_method(name, target)
        return _default_hub_method(name, body, self.account_id)

    def _authenticate(self, request: RecordedRequest) -> tuple[str | None, str | None]:
        header = request.header("Authorization")
        if not header:
            return "You must provide authentication via an API key.", None
        scheme, _, credential = header.strip().partition(" ")
        if scheme == "Basic":
            decoded = base64.b64decode(credential.strip()).decode("utf-8", "replace")
            key = decoded.split(":", 1)[0]
        elif scheme == "Bearer":
            key = credential.strip()
        else:
            return f"Unknown authorization type '{scheme}'", None

        if key == self.api_key:
            return None, None
        if key in self.project_keys and request.endpoint == "project":
            return None, self.project_keys[key]
        if request.endpoint == "hub":
            return (
                "must be signed in and MUST provide an api key "
                "(cookies are not allowed)",
                None,
            )
        return "must sign in as project or account", None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _default_project_method(name: str | None, project_id: str) -> Any:
    if name == "system.ping":
        return {"now": _now_ms()}
    if name == "system.test":
        return {"project_id": project_id, "server_time": _now_ms()}
    if name == "system.exec":
        return {"type": "blocking", "stdout": "", "stderr": "", "exit_code": 0}
    if name is None:
        return {
            "error": "TypeError: Cannot read properties of undefined (reading 'split')"
        }
    return {"error": f"Error: unknown function '{name}'"}


def _default_hub_method(name: str | None, body: dict, account_id: str) -> Any:
    if name == "system.ping":
        return {"now": _now_ms()}
    if name == "system.test":
        return {"account_id": account_id, "server_time": _now_ms()}
    if name == "projects.state":
        return {"state": "running", "time": "2026-07-01T09:30:00.000Z"}
    if name is None:
        return {
            "error": "TypeError: Cannot read properties of undefined (reading 'split')"
        }
    return {"error": f"Error: unknown function '{name}'"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeCoCalc

    def handle_error(self, request, client_address) -> None:
        # Failed TLS handshakes and clients that hang up are part of the tests.
        pass


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        # Headers and body go out in separate writes; without TCP_NODELAY the second
        # one waits for the client's delayed ACK (about 40 ms on Linux).
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        context = self.server.fake._ssl_context
        if context is not None:
            self.request = context.wrap_socket(self.request, server_side=True)
        super().setup()

    def log_message(self, format: str, *args) -> None:
        pass

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = None

        path = self.path.split("?", 1)[0]
        if path.startswith(("http://", "https://")):
            # Used as a plain HTTP proxy, the server gets the absolute URL.
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        endpoint = None
        for name in ("hub", "project"):
            if path == f"{fake.base_path}/api/conat/{name}":
                endpoint = name
        request = RecordedRequest(
            method=self.command,
            path=path,
            endpoint=endpoint,
            headers=dict(self.headers.items()),
            body=raw,
            json=decoded,
            arrived=time.time(),
            arrived_monotonic=time.monotonic(),
        )
        fake._record(request)
        self._send(fake.answer(request), fake._stopping)

    def _send(self, reply: Reply, stopping: threading.Event) -> None:
        if reply.delay:
            stopping.wait(reply.delay)
        if reply.drop:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return

        payload = reply.encoded_body()
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()
        if reply.cut_after is not None:
            self.wfile.write(payload[: reply.cut_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(payload)


@dataclass
class TLSFiles:
    """PEM files of a throwaway CA and a server certificate for 127.0.0.1."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_tls_files(directory: Path) -> TLSFiles:
    """Write a new test CA and a server certificate for 127.0.0.1 into *directory*."""
    import trustme

    authority = trustme.CA()
    server = authority.issue_cert("127.0.0.1", "localhost")
    files = TLSFiles(
        ca_cert=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
    )
    authority.cert_pem.write_to_path(str(files.ca_cert))
    server.cert_chain_pems[0].write_to_path(str(files.server_cert))
    for extra in server.cert_chain_pems[1:]:
        extra.write_to_path(str(files.server_cert), append=True)
    server.private_key_pem.write_to_path(str(files.server_key))
    return files


class ConnectProxy:
    """A loopback HTTP proxy that serves CONNECT tunnels and records their targets.

    ``targets`` lists each ``host:port`` asked for, in order.
    """

    def __init__(self) -> None:
        self.targets: list[str] = []
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _TunnelHandler)
        self._server.daemon_threads = True
        self._server.proxy = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ConnectProxy:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()


class _TunnelHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        request_line = self.rfile.readline().decode("latin-1").split()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        if len(request_line) < 2 or request_line[0] != "CONNECT":
            self.wfile.write(
                b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n"
            )
            return

        target = request_line[1]
        self.server.proxy.targets.append(target)
        host, _, port = target.rpartition(":")
        if host not in ("127.0.0.1", "localhost", "[::1]"):
            # Only loopback targets: this proxy must never reach another host.
            self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        with socket.create_connection(
            (host.strip("[]"), int(port)), timeout=10
        ) as upstream:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            _pipe(self.connection, upstream)


def _pipe(left: socket.socket, right: socket.socket) -> None:
    sockets: Iterable[socket.socket] = (left, right)
    while True:
        readable, _, _ = select.select(list(sockets), [], [], 10)
        if not readable:
            return
        for source in readable:
            data = source.recv(65536)
            if not data:
                return
            (right if source is left else left).sendall(data)
