"""What the panels show, fetched without ipywidgets: project state, quotas and use.

One ``db.userQuery`` on the ``projects_all`` table returns a project's state, status,
base settings, run quota and last activity in a single hub request. Hub requests
never start a stopped project, so a panel can watch a project the user just stopped
without starting it again.

Memory and disk are in MB (10**6 bytes), the unit of CoCalc's quotas, so measured
MiB are converted. Times are in seconds, and CPU use in percent of one core.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from cocalc_magics.api.errors import ProtocolError, RemoteError
from cocalc_magics.api.hub_results import ProjectQuotas, ProjectState, ProjectStatus

if TYPE_CHECKING:
    from cocalc_magics.api import Connection

__all__ = [
    "ProjectSnapshot",
    "QuotaUse",
    "fetch_project",
    "format_duration",
    "parse_time",
    "quota_uses",
    "state_label",
]

MB_PER_MIB = 1.048576
_QUERY_FIELDS = ("title", "state", "status", "settings", "run_quota", "last_edited")

# CoCalc's state "opened" means stopped; the other values read as they are.
_STATE_LABELS = {"opened": "stopped", "closed": "stopped", None: "never started"}


def state_label(state: str | None) -> str:
    """Return the word shown for a CoCalc project state (``opened`` is "stopped")."""
    return _STATE_LABELS.get(state, state or "unknown")


def parse_time(value: Any) -> float | None:
    """Convert CoCalc's ISO-8601 text or epoch milliseconds to epoch seconds."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return value / 1000
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    return None


def format_duration(seconds: float | None) -> str:
    """Format seconds as ``45 s``, ``12 min 5 s`` or ``3 h 20 min``."""
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@dataclass
class ProjectSnapshot:
    """A project's state, status and quotas at one moment.

    ``fetched_at`` is this machine's epoch time in seconds when the reply arrived.
    ``last_edited_s`` is the last recorded activity, which CoCalc's idle timer
    counts from.
    """

    project_id: str
    title: str | None
    state: ProjectState
    status: ProjectStatus
    quotas: ProjectQuotas
    last_edited_s: float | None
    fetched_at: float = field(default_factory=time.time)

    @property
    def running(self) -> bool:
        """True when the project state is ``running``."""
        return self.state.running

    @property
    def state_since_s(self) -> float | None:
        """Epoch seconds of the last state change, when CoCalc reports it."""
        return parse_time(self.state.time)


def fetch_project(connection: Connection, project_id: str) -> ProjectSnapshot:
    """Read the project's state, status and quotas with one hub request.

    Raises
    ------
    RemoteError
        The account cannot see the project (wrong id, or not a collaborator).
    CoCalcError
        Any other failure of the request.
    """
    template = {"project_id": project_id, **{name: None for name in _QUERY_FIELDS}}
    reply = connection.hub_call(
        "db.userQuery", [{"query": {"projects_all": [template]}}], idempotent=True
    )
    rows = reply.get("projects_all") if isinstance(reply, dict) else None
    if not isinstance(rows, list):
        raise ProtocolError("db.userQuery", "the reply has no projects_all list")
    row = next((r for r in rows if isinstance(r, dict)), None)
    if row is None:
        raise RemoteError(
            "db.userQuery",
            f"project {project_id} is not among the projects of this account",
            hint="Check the project id; the account must be a collaborator.",
            project_id=project_id,
        )

    state = row.get("state") if isinstance(row.get("state"), dict) else {}
    status = row.get("status") if isinstance(row.get("status"), dict) else {}
    return ProjectSnapshot(
        project_id=project_id,
        title=row.get("title"),
        state=ProjectState.from_reply(state, project_id=project_id),
        status=ProjectStatus.from_reply(status, project_id=project_id),
        quotas=ProjectQuotas.from_row({**row, "project_id": project_id}),
        last_edited_s=parse_time(row.get("last_edited")),
    )


@dataclass
class QuotaUse:
    """One quota and, when measured, the current use against it.

    ``used`` and ``limit`` share ``unit``; ``fraction`` is ``used / limit`` (None when
    either is unknown). ``text`` is the readable value, for example
    ``"412 MiB of 1000 MB"``.
    """

    name: str
    label: str
    used: float | None
    limit: float | None
    unit: str
    text: str

    @property
    def fraction(self) -> float | None:
        """Share of the quota in use, from 0 upwards (can exceed 1)."""
        if self.used is None or not self.limit:
            return None
        return self.used / self.limit


def _quota(snapshot: ProjectSnapshot, run_name: str, settings_name: str) -> Any:
    # run_quota is the quota a running project is held to. It is stale or absent
    # while the project is stopped, so the base settings are used then.
    run = snapshot.quotas.run_quota if snapshot.running else {}
    value = run.get(run_name)
    if value is None:
        value = snapshot.quotas.settings.get(settings_name)
    if isinstance(value, bool):
        return value
    return value if isinstance(value, (int, float)) else None


def cpu_percent(
    snapshot: ProjectSnapshot, previous: ProjectSnapshot | None
) -> float | None:
    """CPU use in percent of one core between two snapshots of a running project.

    CoCalc reports cumulative CPU seconds, so a rate needs two snapshots of the same
    run; None when there is only one or the counter went backwards (a restart).
    """
    if previous is None or not snapshot.running or not previous.running:
        return None
    now, before = snapshot.status.cpu_usage_s, previous.status.cpu_usage_s
    wall = snapshot.fetched_at - previous.fetched_at
    if not isinstance(now, (int, float)) or not isinstance(before, (int, float)):
        return None
    if wall <= 0 or now < before:
        return None
    return 100.0 * (now - before) / wall


def quota_uses(
    snapshot: ProjectSnapshot, previous: ProjectSnapshot | None = None
) -> list[QuotaUse]:
    """List memory, CPU, disk, idle timeout and network, each with its current use."""
    return [
        _memory_use(snapshot),
        _cpu_use(snapshot, previous),
        _disk_use(snapshot),
        _idle_use(snapshot),
        _network_use(snapshot),
    ]


def _memory_use(snapshot: ProjectSnapshot) -> QuotaUse:
    limit = _quota(snapshot, "memory_limit", "memory")
    used = None
    if snapshot.running and snapshot.status.memory_rss_mib is not None:
        # Quotas are in MB (10**6 bytes) and the measurement in MiB (2**20 bytes).
        used = snapshot.status.memory_rss_mib * MB_PER_MIB
    return QuotaUse("memory", "Memory", used, limit, "MB", _amount_text(used, limit))


def _cpu_use(snapshot: ProjectSnapshot, previous: ProjectSnapshot | None) -> QuotaUse:
    cores = _quota(snapshot, "cpu_limit", "cores")
    percent = cpu_percent(snapshot, previous)
    limit = cores * 100.0 if cores else None
    if percent is None:
        text = f"{_number(cores)} cores" if cores else "unknown"
    else:
        text = f"{percent:.0f} % of {_number(cores)} cores" if cores else f"{percent:.0f} %"
    return QuotaUse("cpu", "CPU", percent, limit, "%", text)


def _disk_use(snapshot: ProjectSnapshot) -> QuotaUse:
    limit = _quota(snapshot, "disk_quota", "disk_quota")
    used = snapshot.status.disk_mb if snapshot.running else None
    return QuotaUse("disk", "Disk", used, limit, "MB", _amount_text(used, limit))


def _idle_use(snapshot: ProjectSnapshot) -> QuotaUse:
    limit = _quota(snapshot, "idle_timeout", "mintime")
    idle = None
    if snapshot.running and snapshot.last_edited_s is not None:
        idle = max(0.0, snapshot.fetched_at - snapshot.last_edited_s)
    if limit is None:
        text = "unknown"
    elif idle is None:
        text = f"stops after {format_duration(limit)} idle"
    else:
        text = f"idle {format_duration(idle)} of {format_duration(limit)}"
    return QuotaUse("idle_timeout", "Idle timeout", idle, limit, "s", text)


def _network_use(snapshot: ProjectSnapshot) -> QuotaUse:
    allowed = _quota(snapshot, "network", "network")
    if allowed is None:
        text = "unknown"
    else:
        text = "outside access allowed" if allowed else "no outside access"
    value = None if allowed is None else float(bool(allowed))
    return QuotaUse("network", "Network", value, 1.0, "", text)


def _number(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:g}"


def _amount_text(used: float | None, limit: float | None) -> str:
    if used is None and limit is None:
        return "unknown"
    if used is None:
        return f"limit {_number(limit)} MB"
    if limit is None:
        return f"{used:.0f} MB"
    return f"{used:.0f} MB of {_number(limit)} MB"
