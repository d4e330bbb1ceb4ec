"""Running projects: state, start and stop, environment, quotas and status.

A project is a directory under ``<data_dir>/projects/<project_id>`` that is the home
(``HOME``) of its processes. "Running" means that the server accepts project calls
for it. Stopping it kills every process it started, its Jupyter kernels and its
async job records, as stopping a CoCalc project does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

from cocalc_magics.server import processes
from cocalc_magics.server.errors import MethodError
from cocalc_magics.server.jobs import JobLimits, JobRegistry
from cocalc_magics.server.store import Store, now_ms

logger = logging.getLogger(__name__)

# The number ``system.version`` and ``projects.status`` report: CoCalc reports the
# build time of its project code in seconds; this is the release time of this server.
VERSION = 1764806400

BASE_SETTINGS: dict[str, Any] = {
    "cores": 1,
    "cpu_shares": 0,
    "disk_quota": 3000,
    "memory": 1000,
    "memory_request": 0,
    "mintime": 1800,
    "network": 0,
    "member_host": 0,
    "always_running": 0,
}
QUOTA_FIELDS = tuple(BASE_SETTINGS)
HIDDEN_VARIABLES = ("DEBUG", "DEBUG_CONSOLE", "NODE_ENV", "DEBUG_FILE")
TOUCH_INTERVAL_S = 10.0
# Credentials of the user's real CoCalc account never reach local project processes.
PRIVATE_VARIABLES = ("COCALC_API_KEY",)


def iso_time(milliseconds: int) -> str:
    """Format epoch milliseconds as CoCalc's ISO-8601 text with a ``Z`` suffix."""
    moment = datetime.fromtimestamp(milliseconds / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class ProjectRuntime:
    """The live side of one project: its state, processes and async jobs."""

    def __init__(self, manager: ProjectManager, project_id: str):
        self.manager = manager
        self.project_id = project_id
        self.home = manager.projects_dir / project_id
        self.tag = f"{project_id}/{manager.token}"
        self.state = "opened"
        self.state_time_ms = now_ms()
        self.start_ts: int | None = None
        # Pids of the running exec processes, each the leader of its own session.
        # A pid leaves the set when its process ends, so a reused pid never counts.
        self.sessions: set[int] = set()
        self.jobs: JobRegistry | None = None
        self.start_task: asyncio.Task | None = None
        self.stop_task: asyncio.Task | None = None
        self.running = asyncio.Event()
        # The last db.userQuery action request, with its progress fields.
        self.action_request: dict[str, Any] | None = None
        self.stop_requests = 0

    # -- state --------------------------------------------------------------------

    def set_state(self, state: str) -> None:
        self.state = state
        self.state_time_ms = now_ms()
        self.manager.store.update_project(
            self.project_id, state=state, state_time_ms=self.state_time_ms
        )
        logger.info("project %s is %s", self.project_id, state)

    def state_object(self) -> dict[str, Any]:
        return {"state": self.state, "time": iso_time(self.state_time_ms)}

    async def start(self) -> None:
        """Start the project if needed and wait until it is running."""
        if self.stop_task is not None:
            await asyncio.shield(self.stop_task)
        if self.state == "running":
            return
        if self.start_task is None:
            self.start_task = asyncio.ensure_future(self.run_start())
        # asyncio.wait does not raise when a stop cancels the start meanwhile.
        await asyncio.wait({self.start_task})
        if self.state != "running":
            raise MethodError.thrown(
                f"project {self.project_id} was stopped while it was starting"
            )

    def begin_start(self) -> None:
        """Start the project in the background, without waiting."""
        if self.state == "opened" and self.start_task is None:
            self.start_task = asyncio.ensure_future(self.run_start())

    async def run_start(self) -> None:
        try:
            self.set_state("starting")
            self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Records of async jobs are lost on every stop and start.
            self.jobs = JobRegistry(JobLimits.from_environment(), self.sessions)
            if self.manager.start_delay > 0:
                await asyncio.sleep(self.manager.start_delay)
            self.start_ts = now_ms()
            self.set_state("running")
            self.running.set()
        finally:
            self.start_task = None

    async def stop(self) -> None:
        """Stop the project, killing its processes, kernels and job records."""
        self.stop_requests += 1
        if self.stop_task is None:
            self.stop_task = asyncio.ensure_future(self.run_stop())
        await asyncio.shield(self.stop_task)

    async def run_stop(self) -> None:
        try:
            if self.state == "opened" and self.start_task is None:
                return
            if self.start_task is not None:
                self.start_task.cancel()
            self.set_state("stopping")
            self.running.clear()
            if self.jobs is not None:
                self.jobs.clear()
            self.jobs = None
            await self.kill_processes()
            if self.manager.jupyter_loaded:
                await self.manager.jupyter_service().stop_project(self.project_id)
            self.start_ts = None
            self.set_state("opened")
        finally:
            self.stop_task = None

    async def restart(self) -> None:
        """Stop and start again, unless another stop request arrives meanwhile."""
        expected = self.stop_requests + 1
        await self.stop()
        if self.stop_requests == expected:
            await self.start()

    async def kill_processes(self) -> None:
        loop = asyncio.get_running_loop()
        sessions = set(self.sessions)
        count = await loop.run_in_executor(
            None, processes.kill_project_processes, self.tag, sessions
        )
        self.sessions.clear()
        if count:
            logger.info("killed %d processes of project %s", count, self.project_id)

    async def wait_until_listening(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for a starting project to run; True if it does."""
        try:
            await asyncio.wait_for(self.running.wait(), seconds)
        except asyncio.TimeoutError:
            return False
        return True

    # -- what processes see -------------------------------------------------------

    def environment(self, extra: dict[str, str]) -> dict[str, str]:
        """Build the environment of an exec process: the project's, minus debug variables."""
        env = {
            name: value
            for name, value in os.environ.items()
            if name not in HIDDEN_VARIABLES and name not in PRIVATE_VARIABLES
        }
        env["HOME"] = str(self.home)
        env["COCALC_PROJECT_ID"] = self.project_id
        env.update(extra)
        env[processes.TAG_VARIABLE] = self.tag
        return env

    def enforced_quotas(self) -> dict[str, Any]:
        """Return the admin quotas that a local process can be held to.

        Only values an admin set are enforced: ``memory`` (MB) becomes the address
        space limit (RLIMIT_AS) of each exec process and ``cores`` its CPU affinity.
        ``mintime`` (the idle timeout) is reported in ``run_quota`` but not enforced:
        a local project never stops by itself, and exec timeouts are not capped by it. The base
        defaults are not applied, because a 1000 MB address-space limit would break
        many ordinary programs that reserve more virtual memory than they use.
        """
        settings = self.manager.store.get_project(self.project_id).settings
        quotas = {}
        for name in ("memory", "cores"):
            value = number_or_none(settings.get(name))
            if value:
                quotas[name] = value
        return quotas

    def run_quota(self) -> dict[str, Any] | None:
        """Return the quota the project runs with, as CoCalc reports it (None when stopped)."""
        if self.state != "running":
            return None
        settings = effective_settings(
            self.manager.store.get_project(self.project_id).settings
        )
        return {
            "memory_limit": settings["memory"],
            "memory_request": settings["memory_request"],
            "cpu_limit": settings["cores"],
            "cpu_request": settings["cpu_shares"] / 1024,
            "disk_quota": settings["disk_quota"],
            "idle_timeout": settings["mintime"],
            "network": bool(settings["network"]),
            "member_host": bool(settings["member_host"]),
            "always_running": bool(settings["always_running"]),
            "privileged": False,
            "dedicated_vm": False,
            "dedicated_disks": [],
            "gpu": False,
            "pay_as_you_go": None,
        }

    async def status(self) -> dict[str, Any]:
        """Measure memory, CPU and disk use of the project's processes (``{}`` when stopped)."""
        if self.state != "running":
            return {}
        kernel_pids = []
        if self.manager.jupyter_loaded:
            kernels = self.manager.jupyter_service().running_kernels(self.project_id)
            kernel_pids = [kernel["pid"] for kernel in kernels]
        loop = asyncio.get_running_loop()
        usage = await loop.run_in_executor(None, self.measure, kernel_pids)
        return {
            "project.pid": os.getpid(),
            "start_ts": self.start_ts,
            "version": VERSION,
            **usage,
        }

    def measure(self, kernel_pids: list[int]) -> dict[str, Any]:
        found = {
            process.pid: process
            for process in processes.project_processes(self.tag, set(self.sessions))
        }
        for pid in kernel_pids:
            found.update(
                (process.pid, process) for process in processes.process_tree(pid)
            )
        rss = 0
        cpu = 0.0
        for process in found.values():
            try:
                rss += process.memory_info().rss
                times = process.cpu_times()
                cpu += times.user + times.system
            except psutil.Error:
                continue
        return {
            "memory": {"rss": rss // 1024},
            "cpu": {"usage": round(cpu, 3)},
            "processes": {"count": len(found)},
            "disk_MB": round(directory_size(self.home) / 1e6, 3),
        }


def directory_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def number_or_none(value: Any) -> float | None:
    """Convert a stored quota (CoCalc stores some as strings) to a number."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def effective_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Return the stored settings with the base defaults filled in, as numbers."""
    result = dict(BASE_SETTINGS)
    for name, value in settings.items():
        number = number_or_none(value)
        if number is not None:
            result[name] = int(number) if number.is_integer() else number
    return result


class ProjectManager:
    """All projects of the server, and the Jupyter service they share."""

    def __init__(self, store: Store, data_dir: Path, start_delay: float = 0.0):
        self.store = store
        self.projects_dir = data_dir / "projects"
        self.projects_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.start_delay = start_delay
        # A random token of this server instance, so that the process tag of a
        # project never matches processes of another server or of the user.
        self.token = secrets.token_hex(8)
        self.runtimes: dict[str, ProjectRuntime] = {}
        self._jupyter: Any = None
        self.touched: dict[str, float] = {}
        self.reset_states()

    def reset_states(self) -> None:
        """Mark every project stopped: no process survives a server restart."""
        for project_id in self.store.all_project_ids():
            row = self.store.get_project(project_id)
            if row is not None and row.state != "opened":
                self.store.update_project(
                    project_id, state="opened", state_time_ms=now_ms()
                )

    def runtime(self, project_id: str) -> ProjectRuntime:
        runtime = self.runtimes.get(project_id)
        if runtime is None:
            runtime = ProjectRuntime(self, project_id)
            row = self.store.get_project(project_id)
            if row is not None:
                runtime.state_time_ms = row.state_time_ms
            self.runtimes[project_id] = runtime
        return runtime

    @property
    def jupyter_loaded(self) -> bool:
        return self._jupyter is not None

    def jupyter_service(self) -> Any:
        """Return the Jupyter service, importing it on first use."""
        if self._jupyter is None:
            try:
                from cocalc_magics.server.jupyter import JupyterService
            except ImportError as error:
                raise MethodError.thrown(
                    f"Jupyter support is not available on this server ({error})"
                ) from error
            self._jupyter = JupyterService()
        return self._jupyter

    def touch(self, project_id: str, *, force: bool = False) -> None:
        """Record activity on a project (its ``last_edited`` time).

        Every project call touches its project, so the write is skipped when the
        previous one is less than ``TOUCH_INTERVAL_S`` old, unless ``force`` is set.
        """
        now = time.monotonic()
        if not force and now - self.touched.get(project_id, -TOUCH_INTERVAL_S) < (
            TOUCH_INTERVAL_S
        ):
            return
        self.touched[project_id] = now
        self.store.update_project(project_id, last_edited_ms=now_ms())

    async def shutdown(self) -> None:
        """Stop every running project and close the Jupyter service."""
        for runtime in list(self.runtimes.values()):
            if runtime.state != "opened" or runtime.start_task is not None:
                await runtime.stop()
        if self._jupyter is not None:
            await self._jupyter.close()
