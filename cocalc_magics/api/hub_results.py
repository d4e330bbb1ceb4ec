"""Results of the hub helpers: project state, status, quotas and project lists.

The hub returns dates as ISO-8601 strings and keeps them so; numbers stored as text
in a project's ``settings`` (``"1000"``) are converted to numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cocalc_magics.api.results import ResultDisplay, expect_dict

__all__ = [
    "ProjectInfo",
    "ProjectQuotas",
    "ProjectState",
    "ProjectStatus",
    "to_number",
]

# Quota fields readable through db.userQuery on the projects_all table.
QUOTA_QUERY_FIELDS = ("title", "state", "settings", "run_quota", "site_license")


def to_number(value: Any) -> Any:
    """Return *value* as an int or float when it is a numeric string, else unchanged."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() else number
    return value


@dataclass(repr=False)
class ProjectState(ResultDisplay):
    """A project's run state from ``projects.state`` (which does not start it).

    ``state`` is one of CoCalc's values (``opened`` means stopped, ``starting``,
    ``running``, ...), or None for a project that never ran. ``time`` is an ISO-8601
    string. ``error`` is CoCalc's last error text for the project, possibly empty;
    it is part of a successful result and is not raised.
    """

    state: str | None
    time: str | None
    error: str | None
    raw: dict
    project_id: str | None = None

    @property
    def running(self) -> bool:
        """True when ``state`` is ``"running"``."""
        return self.state == "running"

    @classmethod
    def from_reply(cls, reply: Any, *, project_id: str | None) -> ProjectState:
        reply = expect_dict(reply or {}, "projects.state")
        return cls(
            state=reply.get("state"),
            time=reply.get("time"),
            error=reply.get("error"),
            raw=reply,
            project_id=project_id,
        )

    def _display_fields(self) -> list[tuple[str, Any]]:
        return [
            ("project_id", self.project_id),
            ("state", self.state),
            ("time", self.time),
            ("error", self.error or None),
        ]


@dataclass(repr=False)
class ProjectStatus(ResultDisplay):
    """Informational status of a running project from ``projects.status``.

    Every key is optional and the object is empty for a stopped project in some
    deployments. CoCalc's project code (``kucalc.ts``) reports ``memory.rss`` and
    ``memory.limit`` in KiB and ``cpu.usage`` in seconds; they are converted to MiB
    here.
    """

    raw: dict
    project_id: str | None = None
    memory_rss_mib: float | None = None
    memory_limit_mib: float | None = None
    cpu_usage_s: float | None = None
    disk_mb: float | None = None
    oom_kills: int | None = None
    start_ts_ms: int | None = None

    @classmethod
    def from_reply(cls, reply: Any, *, project_id: str | None) -> ProjectStatus:
        reply = expect_dict(reply or {}, "projects.status")
        memory = reply.get("memory") if isinstance(reply.get("memory"), dict) else {}
        cpu = reply.get("cpu") if isinstance(reply.get("cpu"), dict) else {}
        return cls(
            raw=reply,
            project_id=project_id,
            memory_rss_mib=_kib_to_mib(memory.get("rss")),
            memory_limit_mib=_kib_to_mib(memory.get("limit")),
            cpu_usage_s=to_number(cpu.get("usage")),
            disk_mb=to_number(reply.get("disk_MB")),
            oom_kills=reply.get("oom_kills"),
            start_ts_ms=reply.get("start_ts"),
        )

    def _display_fields(self) -> list[tuple[str, Any]]:
        return [
            ("project_id", self.project_id),
            ("memory_rss_mib", self.memory_rss_mib),
            ("memory_limit_mib", self.memory_limit_mib),
            ("cpu_usage_s", self.cpu_usage_s),
            ("disk_mb", self.disk_mb),
            ("oom_kills", self.oom_kills),
        ]


def _kib_to_mib(value: Any) -> float | None:
    value = to_number(value)
    if isinstance(value, (int, float)) and value:
        return round(value / 1024, 1)
    return None


@dataclass(repr=False)
class ProjectQuotas(ResultDisplay):
    """A project's quotas, read from the ``projects_all`` table.

    ``settings`` holds the base quotas set by admins (``memory`` and ``disk_quota``
    in MB, ``cores``, ``mintime`` in seconds, ...), with numeric strings converted.
    ``run_quota`` is the quota the project runs with now; it is stale or empty while
    the project is stopped. ``site_license`` maps license ids to their upgrades.
    """

    project_id: str
    title: str | None
    state: str | None
    settings: dict = field(default_factory=dict)
    run_quota: dict = field(default_factory=dict)
    site_license: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: dict) -> ProjectQuotas:
        settings = row.get("settings") or {}
        state = row.get("state") or {}
        return cls(
            project_id=row.get("project_id", ""),
            title=row.get("title"),
            state=state.get("state") if isinstance(state, dict) else None,
            settings={key: to_number(value) for key, value in settings.items()},
            run_quota=dict(row.get("run_quota") or {}),
            site_license=dict(row.get("site_license") or {}),
            raw=row,
        )

    def _display_fields(self) -> list[tuple[str, Any]]:
        run = self.run_quota
        return [
            ("project_id", self.project_id),
            ("title", self.title),
            ("state", self.state),
            ("memory_limit_mb", run.get("memory_limit")),
            ("cpu_limit", run.get("cpu_limit")),
            ("disk_quota_mb", run.get("disk_quota", self.settings.get("disk_quota"))),
            ("idle_timeout_s", run.get("idle_timeout")),
            ("licenses", len(self.site_license) or None),
        ]


@dataclass(repr=False)
class ProjectInfo(ResultDisplay):
    """One project of the account, from the ``projects_all`` table."""

    project_id: str
    title: str | None
    state: str | None
    last_edited: str | None
    description: str | None = None
    raw: dict = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: dict) -> ProjectInfo:
        state = row.get("state") or {}
        return cls(
            project_id=row.get("project_id", ""),
            title=row.get("title"),
            state=state.get("state") if isinstance(state, dict) else None,
            last_edited=row.get("last_edited"),
            description=row.get("description"),
            raw=row,
        )

    def _display_fields(self) -> list[tuple[str, Any]]:
        return [
            ("project_id", self.project_id),
            ("title", self.title),
            ("state", self.state),
            ("last_edited", self.last_edited),
        ]
