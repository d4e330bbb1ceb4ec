"""Opening and closing a server on a data directory, and ``LocalServer``.

A data directory contains ``state.sqlite3``, the project homes under ``projects/``,
``connection.json`` and ``server.log``. ``connection.json`` has the URL, the account
key, the account and project ids and the pid, with mode 0600. It stays after a stop,
so that a restart keeps the key. ``server.log`` has mode 0600 and never a key. One
server at a time may use a data directory, because a running server keeps an
exclusive ``flock`` on ``server.lock``.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.netutil

from cocalc_magics.server import auth
from cocalc_magics.server.app import ServerState, make_app
from cocalc_magics.server.projects import ProjectManager
from cocalc_magics.server.store import Store

logger = logging.getLogger(__name__)

CONNECTION_FILE = "connection.json"
LOCK_FILE = "server.lock"
LOG_FILE = "server.log"
# Tornado reads bodies up to this size, so that the handler can reply to a body over
# the 1 MB limit with CoCalc's 413 text rather than a dropped connection.
TORNADO_BODY_LIMIT = 64 * 1024 * 1024
LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}


class DataDirectoryBusy(RuntimeError):
    """Another live server already uses the data directory."""


def default_data_dir() -> Path:
    """Return the data directory used when none is given."""
    import platformdirs

    return Path(platformdirs.user_data_dir("cocalc-magics")) / "local-server"


def private_directory(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def write_private_file(path: Path, text: str) -> None:
    """Write a file readable only by its owner, replacing it atomically."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


def read_connection(data_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((data_dir / CONNECTION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def format_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


@dataclass
class Identity:
    """The default account, its key and its default project."""

    account_id: str
    api_key: str
    project_id: str


def bootstrap(store: Store, data_dir: Path) -> Identity:
    """Create or reuse the default (admin) account, its key and default project.

    Only a hash of each key is stored, so the key text comes from the previous
    ``connection.json``. A new key is created when that file is gone.
    """
    account_id = store.get_meta("default_account_id")
    if account_id is None or store.get_account(account_id) is None:
        account_id = store.create_account("Local", "User", admin=True)
        store.set_meta("default_account_id", account_id)

    project_id = store.get_meta("default_project_id")
    if project_id is None or store.get_project(project_id) is None:
        project_id = store.create_project(account_id, "Local project", "")
        store.set_meta("default_project_id", project_id)
    private_directory(data_dir / "projects" / project_id)

    previous = read_connection(data_dir) or {}
    api_key = previous.get("api_key")
    caller = auth.lookup_key(store, api_key) if isinstance(api_key, str) else None
    if caller is None or caller.account_id != account_id or caller.project_id:
        _, api_key = auth.create_api_key(store, account_id, name="local server")
    return Identity(account_id=account_id, api_key=api_key, project_id=project_id)


class ServerCore:
    """One open server: store, projects, HTTP listener and ``connection.json``.

    ``open`` and ``close`` run on the event loop that serves requests.
    """

    def __init__(self, data_dir: Path, host: str, port: int, start_delay: float):
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.host = host
        self.port = port
        self.start_delay = start_delay
        self.url = ""
        self.identity: Identity | None = None
        self.lock_descriptor: int | None = None
        self.http: tornado.httpserver.HTTPServer | None = None
        self.store: Store | None = None
        self.projects: ProjectManager | None = None

    def acquire_lock(self) -> None:
        private_directory(self.data_dir)
        descriptor = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            owner = (read_connection(self.data_dir) or {}).get("pid", "unknown")
            raise DataDirectoryBusy(
                f"another local server (pid {owner}) is using {self.data_dir}; stop it "
                "first or choose another --data-dir"
            ) from None
        self.lock_descriptor = descriptor

    async def open(self) -> None:
        self.acquire_lock()
        try:
            self.store = Store(self.data_dir / "state.sqlite3")
            self.projects = ProjectManager(self.store, self.data_dir, self.start_delay)
            self.identity = bootstrap(self.store, self.data_dir)
            self.listen()
            self.write_connection_file()
        except BaseException:
            await self.close()
            raise
        if self.host not in LOOPBACK_HOSTS:
            logger.warning(
                "listening on %s, which is not a loopback address: API keys cross "
                "the network unencrypted over plain HTTP",
                self.host,
            )
        logger.info(
            "local server listening on %s (data dir %s)", self.url, self.data_dir
        )

    def listen(self) -> None:
        try:
            sockets = tornado.netutil.bind_sockets(self.port, self.host)
        except OSError as error:
            raise OSError(
                error.errno,
                f"cannot listen on {self.host} port {self.port}: {error.strerror}; "
                "choose another --port, or 0 for any free port",
            ) from None
        port = sockets[0].getsockname()[1]
        for sock in sockets:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.http = tornado.httpserver.HTTPServer(
            make_app(ServerState(self.store, self.projects)),
            max_body_size=TORNADO_BODY_LIMIT,
            xheaders=False,
        )
        self.http.add_sockets(sockets)
        self.url = format_url(
            self.host if self.host != "localhost" else "127.0.0.1", port
        )

    def write_connection_file(self) -> None:
        info = {
            "url": self.url,
            "api_key": self.identity.api_key,
            "account_id": self.identity.account_id,
            "project_id": self.identity.project_id,
            "pid": os.getpid(),
        }
        write_private_file(self.data_dir / CONNECTION_FILE, json.dumps(info, indent=2))

    async def close(self) -> None:
        """Stop listening, kill every process the server started, release the lock."""
        if self.http is not None:
            self.http.stop()
            self.http = None
        if self.projects is not None:
            await self.projects.shutdown()
            self.projects = None
        if self.store is not None:
            self.store.close()
            self.store = None
        if self.lock_descriptor is not None:
            # connection.json stays, so that the next start reuses the same key.
            # Readers check that its pid is alive and that its URL replies.
            os.close(self.lock_descriptor)
            self.lock_descriptor = None
            logger.info("local server on %s stopped", self.url)


async def cancel_pending_tasks() -> None:
    """Cancel what is still running on the loop (open long-polls, for example)."""
    current = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks() if task is not current]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


class LocalServer:
    """A local server running in a background thread of this process.

    Parameters
    ----------
    data_dir
        Where state, project homes and ``connection.json`` live; defaults to
        :func:`default_data_dir`.
    host, port
        The listening address; port 0 picks a free port.
    start_delay
        Seconds a starting project stays in state "starting".
    """

    def __init__(
        self,
        data_dir: str | os.PathLike | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        start_delay: float = 0.0,
    ):
        self.core = ServerCore(
            Path(data_dir) if data_dir is not None else default_data_dir(),
            host,
            port,
            start_delay,
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"LocalServer(url={self.url!r}, data_dir={str(self.data_dir)!r})"

    @property
    def data_dir(self) -> Path:
        return self.core.data_dir

    @property
    def url(self) -> str:
        return self.core.url

    @property
    def api_key(self) -> str:
        return self.core.identity.api_key

    @property
    def account_id(self) -> str:
        return self.core.identity.account_id

    @property
    def project_id(self) -> str:
        return self.core.identity.project_id

    def start(self) -> LocalServer:
        """Start serving in a background thread; return once it listens."""
        if self.thread is not None:
            raise RuntimeError("this LocalServer was already started")
        ready = threading.Event()
        failure: list[BaseException] = []
        self.thread = threading.Thread(
            target=self.run,
            args=(ready, failure),
            name="cocalc-magics-server",
            daemon=True,
        )
        self.thread.start()
        ready.wait()
        if failure:
            self.thread.join()
            raise failure[0]
        return self

    def run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.core.open())
        except BaseException as error:  # noqa: BLE001 - handed to start()
            failure.append(error)
            ready.set()
            self.loop.close()
            return
        ready.set()
        try:
            self.loop.run_forever()
            self.loop.run_until_complete(self.core.close())
            self.loop.run_until_complete(cancel_pending_tasks())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()

    def call(self, coroutine: Any, timeout: float = 60.0) -> Any:
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def create_account(
        self, first_name: str = "Test", last_name: str = "User", admin: bool = False
    ) -> tuple[str, str]:
        """Create another account with an account key; return (account_id, key)."""

        async def create() -> tuple[str, str]:
            store = self.core.store
            account_id = store.create_account(first_name, last_name, admin)
            _, key = auth.create_api_key(store, account_id, name="test")
            return account_id, key

        return self.call(create())

    def stop(self) -> None:
        """Kill every process the server started and close its socket."""
        if self.thread is None or self.loop is None or self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
