"""One kernel process of the stateless Jupyter API.

A :class:`StatelessKernel` starts one kernel through jupyter_client's async API, in
a fresh temporary directory and under the process limits of
:mod:`cocalc_magics.server.jupyter_launcher`. It runs code and returns the IOPub
messages of each run, interrupts a run that takes too long, and kills its process
group when closed. The service in :mod:`cocalc_magics.server.jupyter` uses each
kernel for exactly one call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import zmq.asyncio
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

from .jupyter_output import change_directory_code

log = logging.getLogger(__name__)

LAUNCHER = str(Path(__file__).with_name("jupyter_launcher.py"))

# Seconds to wait for a new kernel's kernel_info reply.
START_TIMEOUT_S = 60.0

# Seconds between checks that the kernel process still lives while waiting for
# messages. A kernel that dies never sends its idle status.
POLL_INTERVAL_S = 0.25

# A run that passes its time limit gets SIGINT up to three times, with these pauses
# in seconds after each, and then SIGKILL. These are CoCalc's values.
INTERRUPT_PAUSES_S = (1.0, 1.3, 1.69)

# CoCalc appends at most this much of the kernel's stderr to a kernel exit error.
STDERR_TAIL_CHARS = 4000

# Variables of the server's environment that a kernel must not inherit. jupyter_client
# sets JPY_PARENT_PID itself, and the other JPY_ variables belong to the kernel that
# may host the local server.
_DROPPED_ENVIRONMENT = ("COCALC_API_KEY", "PWD", "OLDPWD")


class SpawnError(Exception):
    """The kernel process did not start, or it died before its kernel_info reply."""


class KernelExitedError(Exception):
    """The kernel process ended while the service still needed it."""

    def __init__(self, exit_code: int, stderr: str = ""):
        self.exit_code = exit_code
        self.stderr = stderr
        tail = f"\n...\n{stderr}" if stderr else ""
        super().__init__(f"Kernel last exited with code {exit_code}.{tail}")


class LimitedKernelManager(AsyncKernelManager):
    """Kernel manager that starts the kernel command through the limits launcher."""

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        """Prefix the kernel command with the launcher that applies the limits."""
        command = super().format_kernel_cmd(extra_arguments)
        return [sys.executable, "-I", "-S", LAUNCHER, "--", *command]


def kernel_environment(home: Path) -> dict[str, str]:
    """Build a kernel's environment: the server's, with ``HOME`` set to ``home``."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("JPY_") and name not in _DROPPED_ENVIRONMENT
    }
    environment["HOME"] = str(home)
    return environment


class StatelessKernel:
    """A kernel that is started, used for one call and then killed.

    Parameters
    ----------
    project_id, kernel_name, language
        The project that owns the kernel, the kernel spec name and its language.
    home
        The project's home directory, used for ``HOME`` and for relative paths.
    runtime_dir
        A private directory for the connection file, IPC sockets and stderr log.
    context
        The shared ZMQ context of the service.
    spec_manager
        The kernel spec manager that resolves ``kernel_name``.
    """

    def __init__(
        self,
        *,
        project_id: str,
        kernel_name: str,
        language: str,
        home: Path,
        runtime_dir: Path,
        context: zmq.asyncio.Context,
        spec_manager: KernelSpecManager,
    ):
        self.project_id = project_id
        self.kernel_name = kernel_name
        self.language = language
        self.home = Path(home)
        self.in_use = False
        # Set when system.stopJupyterKernel killed the kernel of a call.
        self.stopped_on_request = False
        self.closed = False

        name = f"k-{uuid.uuid4().hex[:12]}"
        self._stderr_path = runtime_dir / f"{name}.log"
        self._temp_dir: Path | None = None
        self._context = context
        # IPC sockets in the private runtime directory open no TCP port, so no other
        # local user can reach the kernel.
        self._manager = LimitedKernelManager(
            kernel_name=kernel_name,
            kernel_spec_manager=spec_manager,
            context=context,
            transport="ipc",
            connection_file=str(runtime_dir / f"{name}.json"),
        )
        self._client: Any = None
        self._process: subprocess.Popen | None = None
        self._start_task: asyncio.Task | None = None
        self._scheduled_start: asyncio.TimerHandle | None = None
        self._active_run: asyncio.Task | None = None

    def __repr__(self) -> str:
        return (
            f"<StatelessKernel {self.kernel_name!r} project={self.project_id} "
            f"pid={self.pid}>"
        )

    @property
    def pid(self) -> int | None:
        """Process id of the kernel (also its process group id), once launched."""
        return None if self._process is None else self._process.pid

    @property
    def connection_file(self) -> str:
        """Path of the kernel's connection file."""
        return self._manager.connection_file

    def exit_code(self) -> int | None:
        """Return the kernel's exit code, or None while it runs or before it starts.

        A kernel killed by signal N reports 128 + N, as a shell does, so SIGKILL
        gives 137.
        """
        if self._process is None:
            return None
        code = self._process.poll()
        if code is None:
            return None
        return 128 - code if code < 0 else code

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the kernel's process group, if the kernel was launched."""
        if self._process is None or self._process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signum)

    # Starting

    def schedule_start(self, delay_s: float) -> None:
        """Start the kernel in the background after ``delay_s`` seconds.

        Pools start their spare kernels a few seconds apart, because starting several
        at once slows down the one a caller waits for.
        """
        loop = asyncio.get_running_loop()
        self._scheduled_start = loop.call_later(delay_s, self._start_in_background)

    def _start_in_background(self) -> None:
        self._scheduled_start = None
        if not self.closed:
            self._ensure_start_task().add_done_callback(self._log_start_failure)

    def _log_start_failure(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.warning(
                "Spare %s kernel of project %s failed to start: %s",
                self.kernel_name,
                self.project_id,
                task.exception(),
            )

    def _ensure_start_task(self) -> asyncio.Task:
        if self._start_task is None:
            self._start_task = asyncio.ensure_future(self._start())
        return self._start_task

    async def start(self) -> None:
        """Start the kernel now, or wait for the start already under way.

        Raises
        ------
        SpawnError
            If the kernel did not start, or was closed while starting.
        """
        if self.closed:
            raise SpawnError("the kernel was stopped before it started")
        if self._scheduled_start is not None:
            self._scheduled_start.cancel()
            self._scheduled_start = None
        task = self._ensure_start_task()
        try:
            # The shield keeps a cancelled caller from cancelling a start that a
            # pool still owns.
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise SpawnError(
                    "the kernel was stopped while it was starting"
                ) from None
            raise

    async def _start(self) -> None:
        self._temp_dir = Path(tempfile.mkdtemp(prefix="cocalc"))
        log.debug(
            "Starting %s kernel for project %s", self.kernel_name, self.project_id
        )
        stderr = await asyncio.to_thread(open, self._stderr_path, "wb")
        try:
            await self._manager.start_kernel(
                cwd=str(self._temp_dir),
                env=kernel_environment(self.home),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        except Exception as error:
            raise SpawnError(str(error)) from error
        finally:
            # The kernel process has its own copy of the file descriptor.
            stderr.close()
        self._process = self._manager.provisioner.process

        self._client = self._manager.client(context=self._context)
        self._client.start_channels(
            shell=True, iopub=True, stdin=False, hb=False, control=False
        )
        try:
            await self._client.wait_for_ready(timeout=START_TIMEOUT_S)
        except RuntimeError as error:
            raise SpawnError(self._describe_start_failure(error)) from error
        log.debug("Started %r", self)

    def _describe_start_failure(self, error: Exception) -> str:
        code = self.exit_code()
        if code is None:
            return str(error)
        return str(KernelExitedError(code, self.stderr_tail()))

    def stderr_tail(self) -> str:
        """Return the last characters the kernel wrote to stderr, stripped."""
        try:
            text = self._stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-STDERR_TAIL_CHARS:].strip()

    # Running code

    async def change_directory(self, path: str) -> list[dict]:
        """Change the kernel's working directory to ``path``, relative to home.

        Returns the items to put before the call's output: nothing, or a stderr item
        when the kernel's language has no known change-directory statement. A
        directory that does not exist fails silently inside the kernel.
        """
        target = os.path.normpath(os.path.join(self.home, path))
        try:
            code = change_directory_code(self.language, target)
        except ValueError as error:
            return [{"name": "stderr", "text": str(error)}]
        if code:
            await self.run(code, timeout_ms=0)
        return []

    async def run(self, code: str, timeout_ms: float) -> list[tuple[str, dict]]:
        """Execute ``code`` as one cell and return its ``(msg_type, content)`` pairs.

        The pairs are the cell's IOPub messages up to the idle status, followed by the
        execute reply when its status is ``ok``. After ``timeout_ms`` (0 means none)
        the run is interrupted with SIGINT, and after three attempts the kernel is
        killed.

        Raises
        ------
        KernelExitedError
            If the kernel process ended during the run, including after SIGKILL.
        """
        msg_id = self._client.execute(
            code,
            silent=False,
            store_history=True,
            allow_stdin=False,
            stop_on_error=True,
        )
        collector = asyncio.ensure_future(self._collect(msg_id))
        self._active_run = collector
        try:
            timeout_s = timeout_ms / 1000 if timeout_ms else None
            await asyncio.wait({collector}, timeout=timeout_s)
            if not collector.done():
                await self._interrupt(collector)
            if collector.cancelled():
                raise self.exited_error()
            return collector.result()
        finally:
            self._active_run = None
            if not collector.done():
                collector.cancel()
                with contextlib.suppress(asyncio.CancelledError, KernelExitedError):
                    await collector

    async def _interrupt(self, collector: asyncio.Task) -> None:
        # NOTE: the run keeps collecting output until the kernel goes idle. CoCalc
        # instead ends it at the first message after the first SIGINT, so output
        # that follows such a message may appear here but not on CoCalc.
        log.info("Interrupting %r after its time limit", self)
        for pause_s in INTERRUPT_PAUSES_S:
            self.signal(signal.SIGINT)
            await asyncio.wait({collector}, timeout=pause_s)
            if collector.done():
                return
        log.warning("Killing %r, which ignored SIGINT", self)
        self.signal(signal.SIGKILL)
        await self._wait_for_exit()
        raise self.exited_error()

    def exited_error(self) -> KernelExitedError:
        """Return the error that reports the kernel's exit code and stderr tail."""
        return KernelExitedError(self.exit_code() or 137, self.stderr_tail())

    async def _wait_for_exit(self, timeout_s: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.exit_code() is None and loop.time() < deadline:
            await asyncio.sleep(0.05)

    async def _collect(self, msg_id: str) -> list[tuple[str, dict]]:
        messages: list[tuple[str, dict]] = []
        while True:
            message = await self._receive(self._client.get_iopub_msg)
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            messages.append((message["msg_type"], message["content"]))
            if (
                message["msg_type"] == "status"
                and message["content"].get("execution_state") == "idle"
            ):
                break

        while True:
            reply = await self._receive(self._client.get_shell_msg)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        if reply["content"].get("status") == "ok":
            messages.append((reply["msg_type"], reply["content"]))
        return messages

    async def _receive(self, get_message: Callable[..., Awaitable[dict]]) -> dict:
        while True:
            try:
                return await get_message(timeout=POLL_INTERVAL_S)
            except queue.Empty:
                if self.exit_code() is not None:
                    raise self.exited_error() from None

    # Stopping

    async def close(self) -> None:
        """Kill the kernel's process group and remove its files. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        if self._scheduled_start is not None:
            self._scheduled_start.cancel()
            self._scheduled_start = None
        try:
            await self._cancel_start()
            self.signal(signal.SIGKILL)
            await self._end_active_run()
        finally:
            await self._release_resources()
        log.debug("Closed %r", self)

    async def _end_active_run(self) -> None:
        active_run = self._active_run
        if active_run is None:
            return
        # A run in progress notices the exit within one poll interval and raises the
        # exit error for its caller.
        await asyncio.wait({active_run}, timeout=2 * POLL_INTERVAL_S + 1)
        if not active_run.done():
            active_run.cancel()

    async def _cancel_start(self) -> None:
        task = self._start_task
        if task is None:
            return
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, SpawnError, Exception):
            await task

    async def _release_resources(self) -> None:
        if self._client is not None:
            self._client.stop_channels()
        try:
            if self._manager.has_kernel:
                await self._manager.shutdown_kernel(now=True)
            else:
                await self._manager.cleanup_resources()
        except Exception:
            log.exception("Failed to shut down %r cleanly", self)
            self.signal(signal.SIGKILL)
        if self._process is not None:
            await self._wait_for_exit()

        with contextlib.suppress(OSError):
            self._stderr_path.unlink()
        if self._temp_dir is not None:
            await asyncio.to_thread(shutil.rmtree, self._temp_dir, ignore_errors=True)
