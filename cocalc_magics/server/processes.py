"""Process control for project processes: limits, signals, trees and samples.

Every exec process starts as the leader of its own session and process group, and
carries a tag in its environment (``TAG_VARIABLE``) made of the project id and a random
token of this server instance. A process belongs to a project when it is in the
session of a running exec process of the project, or descends from one, or carries
the project's tag (for example a daemon that left the session). The token keeps
unrelated processes that merely have ``COCALC_PROJECT_ID`` set from ever matching.
The server drops a session from its set as soon as its leader ends, so a pid reused
by an unrelated session leader never matches.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass

import psutil

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
TAG_VARIABLE = "COCALC_MAGICS_PROCESS_TAG"


@dataclass
class TreeSample:
    """CPU and memory use of a process and all its descendants, summed."""

    timestamp_ms: int
    mem_rss_mib: float
    cpu_secs: float
    process_count: int


def kill_group(pgid: int, signum: int = signal.SIGKILL) -> bool:
    """Send a signal to a process group; return False if the group is gone."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError as error:
        logger.warning("not allowed to signal process group %s: %s", pgid, error)
        return False
    return True


def process_tree(pid: int) -> list[psutil.Process]:
    """Return a process and its descendants, or an empty list if it is gone."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def sample_tree(pid: int) -> TreeSample | None:
    """Measure the summed resident memory and CPU time of a process tree."""
    processes = process_tree(pid)
    if not processes:
        return None

    rss = 0
    cpu = 0.0
    for process in processes:
        try:
            with process.oneshot():
                rss += process.memory_info().rss
                times = process.cpu_times()
        except psutil.Error:
            continue
        # children_* hold the time of children that already ended and were reaped,
        # which are no longer in the tree.
        cpu += times.user + times.system + times.children_user + times.children_system
    return TreeSample(
        timestamp_ms=int(time.time() * 1000),
        mem_rss_mib=rss / MIB,
        cpu_secs=cpu,
        process_count=len(processes),
    )


def belongs_to(pid: int, tag: str, sessions: set[int]) -> bool:
    """Tell whether a running process is one of the project's processes."""
    if pid in sessions:
        return True
    try:
        if os.getsid(pid) in sessions:
            return True
    except OSError:
        return False
    try:
        process = psutil.Process(pid)
        for parent in process.parents():
            if parent.pid in sessions:
                return True
        return process.environ().get(TAG_VARIABLE) == tag
    except psutil.Error:
        return False


def project_processes(tag: str, sessions: set[int]) -> list[psutil.Process]:
    """Find every live process of a project, including daemons that left the tree."""
    found = []
    own_pid = os.getpid()
    for process in psutil.process_iter(["pid"]):
        if process.pid == own_pid:
            continue
        try:
            if os.getsid(process.pid) in sessions:
                found.append(process)
                continue
            if process.environ().get(TAG_VARIABLE) == tag:
                found.append(process)
        except (psutil.Error, OSError):
            continue
    return found


def kill_project_processes(tag: str, sessions: set[int]) -> int:
    """Kill every process of a project with SIGKILL and return how many got it."""
    for session in sessions:
        kill_group(session)
    count = 0
    for process in project_processes(tag, sessions):
        try:
            process.kill()
            count += 1
        except psutil.Error:
            continue
    return count
