"""Typed helpers for hub methods: projects, collaborators, quotas, key checks.

Hub calls need an account key; CoCalc rejects project-scoped keys there. The hub
fills in the caller's account id itself, so no request carries one. Unlike project
calls, ``projects.state``, ``projects.status`` and ``db.userQuery`` do not start a
stopped project.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from cocalc_magics.api.errors import (
    BridgeTimeoutError,
    ConfigurationError,
    ProtocolError,
    RemoteError,
)
from cocalc_magics.api.hub_results import (
    QUOTA_QUERY_FIELDS,
    ProjectInfo,
    ProjectQuotas,
    ProjectState,
    ProjectStatus,
)
from cocalc_magics.api.results import KeyScope, PingResult, expect_dict
from cocalc_magics.api.settings import normalize_project_id

__all__ = ["QUOTA_NAMES", "START_LONG_POLL_S", "STOP_TIMEOUT_MS", "HubMethods"]

logger = logging.getLogger(__name__)

#: Fields ``projects.setQuotas`` accepts (site admins only).
QUOTA_NAMES = frozenset(
    {
        "memory",
        "memory_request",
        "cpu_shares",
        "cores",
        "disk_quota",
        "mintime",
        "network",
        "member_host",
        "always_running",
    }
)
#: Maximum duration in seconds of one ``projects.start`` request. After it the
#: helper polls ``projects.state``, because proxies may cut longer requests.
START_LONG_POLL_S = 60.0
STOP_TIMEOUT_MS = 90_000


class HubMethods:
    """Hub helpers of :class:`~cocalc_magics.api.Connection`."""

    #: Seconds between ``projects.state`` polls while waiting for a start.
    state_poll_interval: float = 2.0

    def _require_project(self, project_id: str | None, method: str) -> str:
        target = project_id or self.project_id
        if not target:
            raise ConfigurationError(
                method,
                "no project id given and the connection has no default project",
                hint="Pass project_id, or set COCALC_PROJECT_ID.",
            )
        return normalize_project_id(target)

    def hub_ping(self) -> PingResult:
        """Call hub ``system.ping`` and time the round trip."""
        started = time.perf_counter()
        reply = self.hub_call("system.ping", [], idempotent=True)
        return PingResult.from_reply(
            reply, round_trip_s=time.perf_counter() - started, project_id=None
        )

    def hub_test(self) -> KeyScope:
        """Call hub ``system.test``, which succeeds only for an account key."""
        reply = expect_dict(
            self.hub_call("system.test", [], idempotent=True), "system.test"
        )
        return KeyScope(
            kind="account",
            account_id=reply.get("account_id"),
            project_id=None,
            server_time_ms=reply.get("server_time"),
        )

    def create_project(
        self,
        title: str | None = None,
        *,
        description: str | None = None,
        start: bool = False,
    ) -> str:
        """Create a project and return its id; ``start=True`` also starts it."""
        options: dict[str, Any] = {}
        if title is not None:
            options["title"] = title
        if description is not None:
            options["description"] = description
        if start:
            options["start"] = True
        reply = self.hub_call("projects.createProject", [options])
        if not isinstance(reply, str):
            raise ProtocolError(
                "projects.createProject",
                f"expected the new project id as a string, got {type(reply).__name__}",
            )
        return reply

    def start_project(
        self, project_id: str | None = None, *, timeout: float = 150.0
    ) -> None:
        """Start the project and wait until its state is ``running``.

        One ``projects.start`` request waits for at most :data:`START_LONG_POLL_S`
        seconds. If the bridge returns 408 first, the start is still going on, and
        ``projects.state`` is polled every :attr:`state_poll_interval` seconds until
        *timeout* seconds have passed in all.

        Raises
        ------
        BridgeTimeoutError
            The project was not running after *timeout* seconds; it may still be
            starting.
        """
        target = self._require_project(project_id, "projects.start")
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or timeout <= 0
        ):
            raise ValueError(
                f"timeout must be a positive number of seconds, not {timeout!r}"
            )
        deadline = time.monotonic() + timeout
        try:
            self.hub_call(
                "projects.start",
                [{"project_id": target}],
                timeout_ms=math.ceil(min(timeout, START_LONG_POLL_S) * 1000),
            )
            return
        except BridgeTimeoutError:
            logger.info("project %s is still starting; polling its state", target)

        while True:
            state = self.project_state(target)
            if state.running:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BridgeTimeoutError(
                    "projects.start",
                    f"project {target} was not running after {timeout:g} s "
                    f"(last state: {state.state or 'unknown'})",
                    hint="The start may still be in progress. Check project_state() "
                    "in a little while, or look at the project in the CoCalc web UI.",
                    project_id=target,
                )
            time.sleep(min(self.state_poll_interval, remaining))

    def stop_project(self, project_id: str | None = None) -> None:
        """Stop the project; CoCalc waits for the stop (up to about 60 s)."""
        target = self._require_project(project_id, "projects.stop")
        self.hub_call(
            "projects.stop", [{"project_id": target}], timeout_ms=STOP_TIMEOUT_MS
        )

    def project_state(self, project_id: str | None = None) -> ProjectState:
        """Return the project's run state without starting it."""
        target = self._require_project(project_id, "projects.state")
        reply = self.hub_call(
            "projects.state", [{"project_id": target}], idempotent=True
        )
        return ProjectState.from_reply(reply, project_id=target)

    def project_status(self, project_id: str | None = None) -> ProjectStatus:
        """Return the project's informational status (memory, CPU, disk)."""
        target = self._require_project(project_id, "projects.status")
        reply = self.hub_call(
            "projects.status", [{"project_id": target}], idempotent=True
        )
        return ProjectStatus.from_reply(reply, project_id=target)

    def project_quotas(self, project_id: str | None = None) -> ProjectQuotas:
        """Read the quota settings, run quota and licenses of the project."""
        target = self._require_project(project_id, "db.userQuery")
        template = {"project_id": target, **{name: None for name in QUOTA_QUERY_FIELDS}}
        rows = self._query_projects(template)
        if not rows:
            raise RemoteError(
                "db.userQuery",
                f"project {target} is not among the projects of this account",
                hint="Check the project id; the account must be a collaborator.",
                project_id=target,
            )
        return ProjectQuotas.from_row(rows[0])

    def set_quotas(self, project_id: str | None = None, **quotas: Any) -> None:
        """Set base quotas of the project (site admins only).

        Keyword names are CoCalc's: ``memory`` and ``memory_request`` in MB,
        ``cores``, ``cpu_shares`` (1024 = one core), ``disk_quota`` in MB,
        ``mintime`` in seconds, and ``network``, ``member_host``, ``always_running``
        as 0 or 1. CoCalc restarts a running project whose quota changed.
        """
        target = self._require_project(project_id, "projects.setQuotas")
        unknown = sorted(set(quotas) - QUOTA_NAMES)
        if unknown:
            raise TypeError(
                f"unknown quota name(s) {', '.join(unknown)}; "
                f"valid names: {', '.join(sorted(QUOTA_NAMES))}"
            )
        if not quotas:
            raise ValueError(
                "set_quotas needs at least one quota, for example memory=2000"
            )
        self.hub_call("projects.setQuotas", [{"project_id": target, **quotas}])

    def add_collaborator(self, account_id: str, project_id: str | None = None) -> None:
        """Add the account *account_id* as a collaborator on the project."""
        self._change_collaborator("projects.addCollaborator", account_id, project_id)

    def remove_collaborator(
        self, account_id: str, project_id: str | None = None
    ) -> None:
        """Remove the account *account_id* from the project's collaborators."""
        self._change_collaborator("projects.removeCollaborator", account_id, project_id)

    def _change_collaborator(
        self, method: str, account_id: str, project_id: str | None
    ) -> None:
        target = self._require_project(project_id, method)
        try:
            account = normalize_project_id(account_id, source="account_id")
        except ConfigurationError:
            raise ValueError(f"account_id must be a UUID, not {account_id!r}") from None
        # These two methods take their options nested under "opts".
        self.hub_call(method, [{"opts": {"project_id": target, "account_id": account}}])

    def projects(self, title: str | None = None) -> list[ProjectInfo]:
        """List the account's projects, keeping those whose title contains *title*.

        The title filter ignores case and runs on the client, because the query
        language matches only whole values.
        """
        template = {
            "project_id": None,
            "title": None,
            "description": None,
            "state": None,
            "last_edited": None,
        }
        projects = [ProjectInfo.from_row(row) for row in self._query_projects(template)]
        if title:
            pattern = title.casefold()
            projects = [p for p in projects if pattern in (p.title or "").casefold()]
        return projects

    def _query_projects(self, template: dict) -> list[dict]:
        query = {"query": {"projects_all": [template]}}
        reply = expect_dict(
            self.hub_call("db.userQuery", [query], idempotent=True), "db.userQuery"
        )
        rows = reply.get("projects_all")
        if not isinstance(rows, list):
            raise ProtocolError("db.userQuery", "the reply has no projects_all list")
        return [row for row in rows if isinstance(row, dict)]
