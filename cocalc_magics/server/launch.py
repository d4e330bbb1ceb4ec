"""Running the server as a process: in the foreground, as a child, or detached.

``spawn_server_process`` starts ``python -m cocalc_magics.server`` as a child, for
tests. ``ensure_local_server`` reuses the live server recorded in a data directory's
``connection.json``, or starts a detached one that outlives the caller, for the
magics' local mode. ``stop_local_server`` stops that one again. The child writes
``connection.json`` once it listens, and the parent reads the URL and key from
there, never from the child's output.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cocalc_magics.server.runtime import (
    CONNECTION_FILE,
    LOG_FILE,
    ServerCore,
    default_data_dir,
    private_directory,
    read_connection,
)

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
LAUNCH_LOCK_FILE = "launch.lock"
# Detached servers are kept referenced so that Python does not warn about them.
detached_processes: list[subprocess.Popen] = []


@dataclass
class ServerInfo:
    """Address of a local server and the credentials of its default account."""

    url: str
    api_key: str = field(repr=False)
    account_id: str
    project_id: str
    pid: int
    data_dir: Path


class ServerProcess:
    """A local server running as a child process; see :func:`spawn_server_process`."""

    def __init__(self, process: subprocess.Popen, info: ServerInfo):
        self.process = process
        self.info = info
        self.url = info.url
        self.api_key = info.api_key
        self.account_id = info.account_id
        self.project_id = info.project_id
        self.pid = info.pid
        self.data_dir = info.data_dir

    def __repr__(self) -> str:
        return f"ServerProcess(url={self.url!r}, pid={self.pid})"

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout`` s); return its code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("server pid %s ignored SIGTERM; killing it", self.pid)
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def server_command(
    data_dir: Path, host: str, port: int, start_delay: float
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cocalc_magics.server",
        "--data-dir",
        str(data_dir),
        "--host",
        host,
        "--port",
        str(port),
        "--start-delay",
        str(start_delay),
        "--quiet",
    ]


def open_log(data_dir: Path) -> int:
    return os.open(data_dir / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


def log_tail(data_dir: Path, lines: int = 15) -> str:
    try:
        text = (data_dir / LOG_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_for_connection(process: subprocess.Popen, data_dir: Path) -> ServerInfo:
    """Wait until the child wrote ``connection.json`` with its own pid."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        info = read_connection(data_dir)
        if info and info.get("pid") == process.pid:
            return ServerInfo(
                url=info["url"],
                api_key=info["api_key"],
                account_id=info["account_id"],
                project_id=info["project_id"],
                pid=info["pid"],
                data_dir=data_dir,
            )
        if process.poll() is not None:
            raise RuntimeError(
                f"the local server exited with code {process.returncode} before it "
                f"listened; end of {data_dir / LOG_FILE}:\n{log_tail(data_dir)}"
            )
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError(
        f"the local server did not start within {STARTUP_TIMEOUT_S:.0f} s; end of "
        f"{data_dir / LOG_FILE}:\n{log_tail(data_dir)}"
    )


def spawn_server_process(
    data_dir: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    start_delay: float = 0.0,
    env: dict[str, str] | None = None,
) -> ServerProcess:
    """Start ``python -m cocalc_magics.server`` as a child and wait until it listens.

    ``env`` replaces the child's environment (for example to shrink the async job
    limits with the ``COCALC_PROJECT_ASYNC_EXEC_*`` variables).
    """
    directory = private_directory(Path(data_dir).expanduser().absolute())
    log = open_log(directory)
    try:
        process = subprocess.Popen(
            server_command(directory, host, port, start_delay),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
        )
    finally:
        os.close(log)
    return ServerProcess(process, wait_for_connection(process, directory))


def pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def answers_ping(url: str, api_key: str, timeout: float = 3.0) -> bool:
    """Return True if the server returns a hub ``system.ping`` result for this key."""
    request = urllib.request.Request(
        f"{url}/api/conat/hub",
        data=json.dumps({"name": "system.ping"}).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {api_key}",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return False
    return isinstance(body, dict) and "now" in body


def live_server(data_dir: Path) -> ServerInfo | None:
    info = read_connection(data_dir)
    if not info or not pid_alive(info.get("pid")):
        return None
    if not answers_ping(info.get("url", ""), info.get("api_key", "")):
        return None
    return ServerInfo(
        url=info["url"],
        api_key=info["api_key"],
        account_id=info["account_id"],
        project_id=info["project_id"],
        pid=info["pid"],
        data_dir=data_dir,
    )


def ensure_local_server(data_dir: str | os.PathLike | None = None) -> ServerInfo:
    """Return the live server of a data directory, starting a detached one if needed.

    The detached server runs in its own session with no terminal, so it outlives the
    kernel that started it; stop it with :func:`stop_local_server`. A lock file makes
    concurrent callers share one server.
    """
    directory = private_directory(
        Path(data_dir).expanduser().absolute() if data_dir else default_data_dir()
    )
    lock = os.open(directory / LAUNCH_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        running = live_server(directory)
        if running is not None:
            return running
        log = open_log(directory)
        try:
            process = subprocess.Popen(
                server_command(directory, "127.0.0.1", 0, 0.0),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        finally:
            os.close(log)
        detached_processes.append(process)
        info = wait_for_connection(process, directory)
        logger.info("started local server pid %s on %s", info.pid, info.url)
        return info
    finally:
        os.close(lock)


def stop_local_server(data_dir: str | os.PathLike | None = None) -> bool:
    """Stop the server recorded in a data directory; False if none was running."""
    directory = (
        Path(data_dir).expanduser().absolute() if data_dir else default_data_dir()
    )
    info = read_connection(directory)
    pid = (info or {}).get("pid")
    if not info or not pid_alive(pid) or pid == os.getpid():
        return False
    if not answers_ping(info.get("url", ""), info.get("api_key", "")):
        # The pid was reused by an unrelated process; never signal that one.
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and pid_alive(pid):
        reap(pid)
        time.sleep(0.05)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    reap(pid)
    return True


def reap(pid: int) -> None:
    """Collect the exit status if the server is our own child, so it is not a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def configure_logging(data_dir: Path, verbose: bool, console: bool) -> None:
    """Log to ``server.log`` (mode 0600), and warnings to stderr when ``console``.

    Keys are never logged.
    """
    private_directory(data_dir)
    descriptor = open_log(data_dir)
    os.close(descriptor)
    os.chmod(data_dir / LOG_FILE, 0o600)
    handler = logging.FileHandler(data_dir / LOG_FILE, encoding="utf-8")
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.addHandler(handler)
    if console:
        stream = logging.StreamHandler()
        stream.setLevel(logging.DEBUG if verbose else logging.WARNING)
        # Errors that serve already printed for the user go to the log file only.
        stream.addFilter(lambda record: not getattr(record, "printed", False))
        root.addHandler(stream)


def print_banner(core: ServerCore, show_key: bool = False) -> None:
    """Print where the server listens and how to reach its default project.

    The API key is masked unless ``show_key`` is set, because terminal output
    ends up in scrollback, screen recordings and CI logs. The full key is in
    connection.json, which only the owner can read.
    """
    from cocalc_magics.api.settings import mask_key

    identity = core.identity
    connection_file = core.data_dir / CONNECTION_FILE
    key = identity.api_key if show_key else mask_key(identity.api_key)
    print(f"cocalc-magics local server listening on {core.url}", flush=False)
    print(f"  API key:    {key}")
    print(f"  project id: {identity.project_id}")
    print(f"  account id: {identity.account_id}")
    print(f"  saved in:   {connection_file} (readable only by you)")
    if not show_key:
        print("  The full key is in that file; --show-key prints it here.")
    print("Press Ctrl+C to stop.", flush=True)


def use_pidfd_child_watcher(loop: asyncio.AbstractEventLoop) -> None:
    """Watch exec processes through pidfds on Python 3.11 and older.

    The default watcher of those versions starts one thread per child process; a
    pidfd is a file descriptor that the event loop itself polls. Python 3.12 and
    newer choose pidfds on their own. The watcher is global, so only the server's
    own process (never a host of ``LocalServer``) changes it.
    """
    watcher_class = getattr(asyncio, "PidfdChildWatcher", None)
    if sys.version_info >= (3, 12) or watcher_class is None:
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return
    watcher = watcher_class()
    watcher.attach_loop(loop)
    asyncio.set_child_watcher(watcher)


async def serve_until_signalled(
    core: ServerCore, quiet: bool, show_key: bool = False
) -> None:
    loop = asyncio.get_running_loop()
    use_pidfd_child_watcher(loop)
    stopped = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, stopped.set)
    await core.open()
    try:
        if not quiet:
            print_banner(core, show_key)
        await stopped.wait()
        logger.info("stopping on signal")
    finally:
        await core.close()


def serve_foreground(
    data_dir: Path,
    host: str,
    port: int,
    start_delay: float,
    quiet: bool,
    show_key: bool = False,
) -> int:
    """Run a server in this process until SIGTERM or Ctrl+C; return the exit code."""
    from cocalc_magics.server.runtime import DataDirectoryBusy

    core = ServerCore(data_dir, host, port, start_delay)
    try:
        asyncio.run(serve_until_signalled(core, quiet, show_key))
    except (DataDirectoryBusy, OSError) as error:
        print(f"cocalc-magics serve: {error}", file=sys.stderr)
        logger.error("could not start: %s", error, extra={"printed": True})
        return 1
    return 0
