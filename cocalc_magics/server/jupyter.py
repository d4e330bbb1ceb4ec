"""Stateless Jupyter execution service of the local server.

:class:`JupyterService` implements CoCalc's ``system.jupyterExecute`` and the kernel
methods around it (``system.listJupyterKernels``, ``system.stopJupyterKernel``,
``editor.jupyterKernels`` and the hub's ``jupyter.kernels``). Every call takes a
fresh kernel from a pool of kernels started ahead of time for its project and kernel
name, replays the history as one cell whose output is thrown away, runs the input,
and kills that kernel. Nothing but files on disk carries over between calls.

All coroutines must run on one asyncio event loop, the server's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import zmq.asyncio
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

from .errors import MethodError
from .jupyter_kernel import KernelExitedError, SpawnError, StatelessKernel
from .jupyter_output import check_total_time, collect_items, resolve_limits

log = logging.getLogger(__name__)

DEFAULT_POOL_SIZE = 2
DEFAULT_POOL_TIMEOUT_S = 3600

# An idle pool shrinks to this many kernels, never to none.
MIN_POOL_SIZE = 1

# Seconds between the background starts of a pool's spare kernels. Starting several
# at once slows down the kernel that a caller waits for.
POOL_START_STAGGER_S = 3.0

# Upper bound of pool.size, so that a typo cannot start hundreds of kernels.
MAX_POOL_SIZE = 10

# How many dead kernels a call may take from the pool before it gives up. Unlike
# CoCalc, where a pool kernel stopped with system.stopJupyterKernel breaks the next
# call, a call here discards such a kernel and takes another.
MAX_KERNEL_ATTEMPTS = 3

SPAWN_ERROR_PREFIX = "**Unable to Spawn Jupyter Kernel:**"


class JupyterService:
    """Pools of single-use kernels, one pool per project and kernel name.

    Attributes
    ----------
    pool_start_stagger_s : float
        Seconds between the background starts of a pool's spare kernels.
    """

    def __init__(self) -> None:
        self.pool_start_stagger_s = POOL_START_STAGGER_S
        self._spec_manager = KernelSpecManager()
        self._pools: dict[tuple[str, str], list[StatelessKernel]] = {}
        self._kernels: dict[str, list[StatelessKernel]] = {}
        self._idle_timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._background: set[asyncio.Task] = set()
        self._context: zmq.asyncio.Context | None = None
        self._runtime_dir: Path | None = None
        self._closed = False

    # Public methods

    async def execute(
        self,
        *,
        project_id: str,
        home: Path,
        kernel: str,
        input: str,
        history: list[str] | None,
        path: str | None,
        pool: dict | None,
        limits: dict | None,
    ) -> list[dict]:
        """Run ``input`` on a fresh kernel and return its output items.

        Parameters
        ----------
        project_id, home
            The project and its home directory, which becomes the kernel's ``HOME``.
        kernel
            Kernel spec name, such as ``"python3"``.
        input
            The code whose output is returned.
        history
            Earlier inputs, joined with newlines and run first as one cell whose
            output and errors are discarded.
        path
            Directory to change to before running, relative to ``home``. ``""`` and
            ``"."`` mean ``home``. None leaves the kernel in its temporary directory.
        pool
            ``{"size": n, "timeout_s": s}``: spare kernels kept for this project and
            kernel name, and idle seconds before the pool shrinks to one.
        limits
            Time and output limits. Missing keys get different defaults depending on
            whether ``limits`` is sent at all.

        Returns
        -------
        list of dict
            One item per output message. Only truncation notices have an
            ``output_type``.

        Raises
        ------
        MethodError
            For invalid arguments, an unknown kernel or one that fails to start, the
            total time budget being spent, or a kernel that dies during the call.
        """
        self._check_open()
        _check_execute_arguments(kernel, input, history, path)
        size, timeout_s = _pool_options(pool)
        # Validate the limits now, so that invalid ones cost no kernel.
        resolve_limits(limits, _now_ms())
        language = self._kernel_language(kernel)

        started = await self._take_kernel(
            project_id, Path(home), kernel, language, size, timeout_s
        )
        try:
            items: list[dict] = []
            if path is not None:
                items += await started.change_directory(path)
            if history:
                await self._run_cell(started, "\n".join(history), limits)
            items += await self._run_cell(started, input, limits)
            return items
        except KernelExitedError as error:
            log.warning(
                "Kernel %s of project %s exited during a call with code %d",
                started.pid,
                project_id,
                error.exit_code,
            )
            raise MethodError.thrown(str(error)) from None
        finally:
            await self._discard(started)

    def running_kernels(self, project_id: str) -> list[dict]:
        """List the live kernel processes that calls of ``project_id`` started."""
        return [
            {
                "pid": kernel.pid,
                "connectionFile": kernel.connection_file,
                "kernel_name": kernel.kernel_name,
            }
            for kernel in self._kernels.get(project_id, [])
            if kernel.pid is not None and kernel.exit_code() is None
        ]

    async def stop_kernel(self, project_id: str, pid: int) -> dict:
        """Kill the process group of the kernel with ``pid`` if ``project_id`` owns it.

        Returns ``{"success": False}`` for a pid that the project did not start.
        """
        if isinstance(pid, bool) or not isinstance(pid, int):
            raise MethodError.thrown(
                f"pid must be the integer process id of a kernel, got {json.dumps(pid)}"
            )
        for kernel in self._kernels.get(project_id, []):
            if kernel.pid == pid and kernel.exit_code() is None:
                break
        else:
            return {"success": False}

        log.info("Stopping kernel %d of project %s on request", pid, project_id)
        await self._stop(kernel)
        return {"success": True}

    def kernel_specs(self) -> list[dict]:
        """List the installed kernel specs as CoCalc's ``editor.jupyterKernels`` does.

        Each entry is the spec's ``kernel.json`` fields plus ``name`` and
        ``resource_dir``, sorted by name.
        """
        specs = []
        for name, found in sorted(self._spec_manager.get_all_specs().items()):
            spec = dict(found["spec"])
            spec.setdefault("env", {})
            spec.setdefault("metadata", {})
            specs.append({"name": name, **spec, "resource_dir": found["resource_dir"]})
        return specs

    async def stop_project(self, project_id: str) -> None:
        """Kill every kernel of ``project_id``, spare and busy, and drop its pools."""
        for key in [key for key in self._pools if key[0] == project_id]:
            del self._pools[key]
            timer = self._idle_timers.pop(key, None)
            if timer is not None:
                timer.cancel()
        kernels = self._kernels.pop(project_id, [])
        if kernels:
            log.info("Stopping %d kernels of project %s", len(kernels), project_id)
        results = await asyncio.gather(
            *(kernel.close() for kernel in kernels), return_exceptions=True
        )
        for kernel, result in zip(kernels, results):
            if isinstance(result, Exception):
                log.error("Failed to close %r: %s", kernel, result)

    async def close(self) -> None:
        """Kill all kernels, close the ZMQ context and remove the runtime directory."""
        if self._closed:
            return
        self._closed = True
        for project_id in list(self._kernels):
            await self.stop_project(project_id)
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

        if self._context is not None:
            self._context.destroy(linger=0)
            self._context = None
        if self._runtime_dir is not None:
            shutil.rmtree(self._runtime_dir, ignore_errors=True)
            self._runtime_dir = None

    # Kernel specs

    def _kernel_language(self, kernel_name: str) -> str:
        try:
            spec = self._spec_manager.get_kernel_spec(kernel_name)
        except NoSuchKernel:
            available = sorted(self._spec_manager.find_kernel_specs())
            raise self._spawn_error(
                kernel_name,
                f'No spec available for kernel "{kernel_name}".  '
                f"Available specs: {json.dumps(available)}",
            ) from None
        return spec.language or ""

    @staticmethod
    def _spawn_error(kernel_name: str, cause: str) -> MethodError:
        hint = (
            "To see why, run `jupyter console --kernel=" + kernel_name + "` in a "
            "terminal of the project, fix the problem and call again."
        )
        return MethodError.thrown(f"{SPAWN_ERROR_PREFIX}\n\n{cause} \n\n{hint}")

    # Pools

    async def _take_kernel(
        self,
        project_id: str,
        home: Path,
        kernel_name: str,
        language: str,
        size: int,
        timeout_s: float,
    ) -> StatelessKernel:
        for _ in range(MAX_KERNEL_ATTEMPTS):
            kernel = self._pop_from_pool(
                project_id, home, kernel_name, language, size, timeout_s
            )
            try:
                await kernel.start()
            except SpawnError as error:
                if kernel.stopped_on_request:
                    await self._discard(kernel)
                    raise MethodError.thrown(str(kernel.exited_error())) from None
                log.warning(
                    "Failed to start %s kernel for project %s: %s",
                    kernel_name,
                    project_id,
                    error,
                )
                await self._discard(kernel)
                raise self._spawn_error(kernel_name, str(error)) from None
            except asyncio.CancelledError:
                # The caller went away, so nobody else will close this kernel.
                self._in_background(self._discard(kernel))
                raise
            if kernel.exit_code() is None:
                return kernel
            if kernel.stopped_on_request:
                # The caller stopped this call's own kernel: fail the call as CoCalc
                # does, rather than run the input on another kernel.
                await self._discard(kernel)
                raise MethodError.thrown(str(kernel.exited_error()))
            log.warning("Discarding dead pool kernel %r", kernel)
            await self._discard(kernel)
        raise self._spawn_error(
            kernel_name,
            f"{MAX_KERNEL_ATTEMPTS} kernels in a row died right after start.",
        )

    def _pop_from_pool(
        self,
        project_id: str,
        home: Path,
        kernel_name: str,
        language: str,
        size: int,
        timeout_s: float,
    ) -> StatelessKernel:
        """Refill the pool to ``size`` spare kernels and return one more.

        The returned kernel may not have started yet. The new spares start in the
        background a few seconds apart.
        """
        key = (project_id, kernel_name)
        self._reset_idle_timer(key, timeout_s)
        pool = self._pools.setdefault(key, [])
        delay_s = self.pool_start_stagger_s
        while len(pool) <= size:
            kernel = self._new_kernel(project_id, home, kernel_name, language)
            kernel.schedule_start(delay_s)
            delay_s += self.pool_start_stagger_s
            pool.append(kernel)
        kernel = pool.pop(0)
        kernel.in_use = True
        return kernel

    def _new_kernel(
        self, project_id: str, home: Path, kernel_name: str, language: str
    ) -> StatelessKernel:
        # A call that was under way when the service closed must not start kernels.
        self._check_open()
        kernel = StatelessKernel(
            project_id=project_id,
            kernel_name=kernel_name,
            language=language,
            home=home,
            runtime_dir=self._ensure_runtime_dir(),
            context=self._ensure_context(),
            spec_manager=self._spec_manager,
        )
        self._kernels.setdefault(project_id, []).append(kernel)
        return kernel

    def _reset_idle_timer(self, key: tuple[str, str], timeout_s: float) -> None:
        timer = self._idle_timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if timeout_s:
            loop = asyncio.get_running_loop()
            self._idle_timers[key] = loop.call_later(timeout_s, self._shrink_pool, key)

    def _shrink_pool(self, key: tuple[str, str]) -> None:
        self._idle_timers.pop(key, None)
        pool = self._pools.get(key, [])
        excess = len(pool) - MIN_POOL_SIZE
        if excess <= 0:
            return
        log.info("Pool %s was idle, closing %d spare kernels", key, excess)
        # The oldest kernels go first.
        for kernel in pool[:excess]:
            self._in_background(self._discard(kernel))
        del pool[:excess]

    async def _stop(self, kernel: StatelessKernel) -> None:
        pool = self._pools.get((kernel.project_id, kernel.kernel_name), [])
        if kernel in pool:
            pool.remove(kernel)
        if kernel.in_use:
            # The call that uses the kernel detects the exit, reports its code and
            # discards the kernel. A kernel that is still starting fails its call
            # with the same "Kernel last exited" error, not as a spawn failure.
            kernel.stopped_on_request = True
            kernel.signal(signal.SIGKILL)
            return
        await self._discard(kernel)

    async def _discard(self, kernel: StatelessKernel) -> None:
        kernels = self._kernels.get(kernel.project_id, [])
        if kernel in kernels:
            kernels.remove(kernel)
        await kernel.close()

    # Runs

    @staticmethod
    async def _run_cell(
        kernel: StatelessKernel, code: str, limits: dict | None
    ) -> list[dict]:
        now_ms = _now_ms()
        resolved = resolve_limits(limits, now_ms)
        check_total_time(resolved, now_ms)
        messages = await kernel.run(code, resolved.timeout_ms_per_cell)
        return collect_items(messages, resolved)

    # Resources

    def _check_open(self) -> None:
        if self._closed:
            raise MethodError.thrown("the Jupyter service of this server is closed")

    def _ensure_context(self) -> zmq.asyncio.Context:
        if self._context is None:
            self._context = zmq.asyncio.Context()
        return self._context

    def _ensure_runtime_dir(self) -> Path:
        if self._runtime_dir is None:
            self._runtime_dir = Path(tempfile.mkdtemp(prefix="cocalc-kernels-"))
        return self._runtime_dir

    def _in_background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _now_ms() -> float:
    return time.time() * 1000


def _check_execute_arguments(kernel: Any, input: Any, history: Any, path: Any) -> None:
    if not isinstance(kernel, str) or not kernel:
        raise MethodError.thrown(
            'kernel must be a kernel spec name such as "python3", '
            f"got {json.dumps(kernel)}"
        )
    if not isinstance(input, str):
        raise MethodError.thrown(
            f"input must be a string of code, got {json.dumps(input)[:100]}"
        )
    if history is not None and (
        not isinstance(history, list) or not all(isinstance(x, str) for x in history)
    ):
        raise MethodError.thrown("history must be a list of strings of code")
    if path is not None and not isinstance(path, str):
        raise MethodError.thrown(
            f"path must be a directory relative to the home directory, "
            f"got {json.dumps(path)}"
        )


def _pool_options(pool: Any) -> tuple[int, float]:
    if pool is None:
        return DEFAULT_POOL_SIZE, DEFAULT_POOL_TIMEOUT_S
    if not isinstance(pool, dict):
        raise MethodError.thrown(
            f'pool must be an object such as {{"size": 2, "timeout_s": 3600}}, '
            f"got {json.dumps(pool)}"
        )
    size = pool.get("size")
    timeout_s = pool.get("timeout_s")
    if size is None:
        size = DEFAULT_POOL_SIZE
    if timeout_s is None:
        timeout_s = DEFAULT_POOL_TIMEOUT_S
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise MethodError.thrown(
            f"pool.size must be an integer of 0 or more, got {json.dumps(size)}"
        )
    if size > MAX_POOL_SIZE:
        raise MethodError.thrown(
            f"pool.size must be at most {MAX_POOL_SIZE}, got {size}, because each "
            "spare kernel is a running process"
        )
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)):
        raise MethodError.thrown(
            f"pool.timeout_s must be a number of seconds, got {json.dumps(timeout_s)}"
        )
    if timeout_s < 0:
        raise MethodError.thrown(f"pool.timeout_s must be 0 or more, got {timeout_s}")
    return size, timeout_s
