"""Async exec jobs: records, CPU and memory samples, and retention.

Records live in memory only, as in a CoCalc project. Each is kept for
``COCALC_PROJECT_ASYNC_EXEC_TTL_S`` seconds (3600) after it was last read or
written. At most ``COCALC_PROJECT_ASYNC_EXEC_CACHE_MAX`` records (100) are kept, and
the least recently used is dropped first. All are lost when the project stops.
Samples of a running job are taken about 1 s after its start and then every
``min(MONITOR_INTERVAL_S, max(1, floor(elapsed_s / 6)))`` seconds, where
``COCALC_PROJECT_ASYNC_EXEC_MONITOR_INTERVAL_S`` sets that ceiling (60).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from cocalc_magics.server.errors import MethodError
from cocalc_magics.server.execution import (
    ASYNC_DEFAULT_MAX_OUTPUT,
    ExecSpec,
    OutputBuffer,
    SpawnError,
    not_able_to_run_error,
    start_process,
    wait_for_process,
)
from cocalc_magics.server.processes import sample_tree

logger = logging.getLogger(__name__)

MAX_SAMPLES = 100
FIRST_SAMPLE_S = 1.0


def env_number(name: str, default: float) -> float:
    """Read a positive number from the environment, falling back to the default."""
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        logger.warning("ignoring %s=%r: not a number", name, text)
        return default
    return value if value > 0 else default


@dataclass
class JobLimits:
    """Retention and sampling settings, read from the environment at project start."""

    ttl_s: float = 3600.0
    max_records: int = 100
    monitor_interval_s: float = 60.0

    @classmethod
    def from_environment(cls) -> JobLimits:
        return cls(
            ttl_s=env_number("COCALC_PROJECT_ASYNC_EXEC_TTL_S", 3600.0),
            max_records=int(env_number("COCALC_PROJECT_ASYNC_EXEC_CACHE_MAX", 100)),
            monitor_interval_s=env_number(
                "COCALC_PROJECT_ASYNC_EXEC_MONITOR_INTERVAL_S", 60.0
            ),
        )


@dataclass
class Job:
    """One async exec job and what a poll returns for it."""

    job_id: str
    spec: ExecSpec
    start_ms: int
    stdout: OutputBuffer
    stderr: OutputBuffer
    pid: int | None = None
    status: str = "running"
    exit_code: int = 0
    elapsed_s: float | None = None
    final_stdout: str | None = None
    final_stderr: str | None = None
    stats: list[dict[str, Any]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    last_access: float = field(default_factory=time.monotonic)

    def record(self, with_stats: bool) -> dict[str, Any]:
        result: dict[str, Any] = {
            "type": "async",
            "job_id": self.job_id,
            "status": self.status,
            "start": self.start_ms,
        }
        if self.pid is not None:
            result["pid"] = self.pid
        if self.status == "running":
            result["stdout"] = self.stdout.text
            result["stderr"] = self.stderr.text
        else:
            result["stdout"] = self.final_stdout
            result["stderr"] = self.final_stderr
        result["exit_code"] = self.exit_code
        if self.elapsed_s is not None:
            result["elapsed_s"] = self.elapsed_s
        if with_stats and self.stats:
            result["stats"] = list(self.stats)
        return result

    def finish(self, status: str, exit_code: int, stdout: str, stderr: str) -> None:
        self.status = status
        self.exit_code = exit_code
        self.final_stdout = stdout
        self.final_stderr = stderr
        self.elapsed_s = round(time.time() - self.start_ms / 1000, 3)
        self.done.set()


class JobRegistry:
    """The async jobs of one project run."""

    def __init__(self, limits: JobLimits, leaders: set[int]):
        self.limits = limits
        # The pids of running job processes, shared with the project.
        self.leaders = leaders
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.tasks: set[asyncio.Task] = set()

    async def start(
        self, spec: ExecSpec, env: dict[str, str], quotas: dict[str, Any]
    ) -> dict[str, Any]:
        """Start a job and return the first record, as soon as the process exists."""
        limit = (
            spec.max_output if spec.max_output is not None else ASYNC_DEFAULT_MAX_OUTPUT
        )
        job = Job(
            job_id=str(uuid.uuid4()),
            spec=spec,
            start_ms=int(time.time() * 1000),
            stdout=OutputBuffer(limit),
            stderr=OutputBuffer(limit),
        )
        self.remember(job)
        try:
            process = await start_process(spec, env, quotas)
        except SpawnError as error:
            reply = job.record(with_stats=False)
            if spec.err_on_exit:
                message = error.json_text
            else:
                message = not_able_to_run_error(spec, error).text
            job.finish("error", 1, "", message)
            return reply

        job.pid = process.pid
        self.leaders.add(process.pid)
        reply = job.record(with_stats=False)
        self.spawn_task(self.follow(job, process))
        self.spawn_task(self.monitor(job))
        return reply

    def spawn_task(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def follow(self, job: Job, process: asyncio.subprocess.Process) -> None:
        """Wait for the job's process and write its final record (outcome table)."""
        try:
            outcome = await wait_for_process(process, job.spec, job.stdout, job.stderr)
        finally:
            self.leaders.discard(process.pid)
        if outcome.killed_by_timeout:
            job.finish("error", 1, "", f"killed command '{job.spec.killed_text}'")
        elif job.spec.err_on_exit and outcome.exit_code != 0:
            job.finish("error", 1, "", job.stderr.text or "No result")
        else:
            job.finish(
                "completed",
                outcome.exit_code,
                job.stdout.final_text(),
                job.stderr.final_text(),
            )
        job.last_access = time.monotonic()

    async def monitor(self, job: Job) -> None:
        """Sample the job's process tree at CoCalc's cadence while it runs."""
        delay = FIRST_SAMPLE_S
        previous: tuple[float, float] | None = None
        while True:
            try:
                await asyncio.wait_for(job.done.wait(), delay)
                return
            except asyncio.TimeoutError:
                pass
            sample = sample_tree(job.pid) if job.pid else None
            if sample is None:
                return
            # cpu_pct is the CPU time used since the previous sample (or the start)
            # divided by the wall time in between.
            now = time.time()
            last_time, last_cpu = previous or (job.start_ms / 1000, 0.0)
            wall = max(now - last_time, 1e-6)
            cpu_pct = 100.0 * (sample.cpu_secs - last_cpu) / wall
            previous = (now, sample.cpu_secs)
            job.stats.append(
                {
                    "timestamp": sample.timestamp_ms,
                    "mem_rss": round(sample.mem_rss_mib, 3),
                    "cpu_pct": round(max(cpu_pct, 0.0), 2),
                    "cpu_secs": round(sample.cpu_secs, 3),
                }
            )
            del job.stats[:-MAX_SAMPLES]
            # A running job refreshes its record at each sample.
            job.last_access = time.monotonic()
            elapsed = time.time() - job.start_ms / 1000
            delay = min(
                self.limits.monitor_interval_s, max(1.0, math.floor(elapsed / 6))
            )

    def remember(self, job: Job) -> None:
        self.jobs[job.job_id] = job
        self.jobs.move_to_end(job.job_id)
        self.expire()
        while len(self.jobs) > self.limits.max_records:
            evicted_id, _ = self.jobs.popitem(last=False)
            logger.info("async job record %s evicted (record limit)", evicted_id)

    def expire(self) -> None:
        cutoff = time.monotonic() - self.limits.ttl_s
        for job_id in [
            key for key, job in self.jobs.items() if job.last_access < cutoff
        ]:
            del self.jobs[job_id]
            logger.info("async job record %s expired", job_id)

    def get(self, job_id: Any) -> Job:
        self.expire()
        job = self.jobs.get(job_id) if isinstance(job_id, str) else None
        if job is None:
            raise MethodError.thrown(f"Async operation '{job_id}' does not exist.")
        job.last_access = time.monotonic()
        self.jobs.move_to_end(job_id)
        return job

    async def poll(self, opts: dict[str, Any]) -> dict[str, Any]:
        """Return the record for ``async_get``, after the job ends with ``async_await``."""
        job = self.get(opts.get("async_get"))
        if opts.get("async_await") and job.status == "running":
            await job.done.wait()
            job.last_access = time.monotonic()
        return job.record(with_stats=bool(opts.get("async_stats")))

    def clear(self) -> None:
        """Forget every record and stop following the processes (project stop)."""
        for task in list(self.tasks):
            task.cancel()
        for job in self.jobs.values():
            if job.status == "running":
                # Only a pending long-poll can still see this record.
                job.finish("error", 1, "", "the project stopped while the job ran")
        self.jobs.clear()
