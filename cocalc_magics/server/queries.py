"""``db.userQuery`` over the ``projects`` and ``projects_all`` tables.

A table name mapped to a list with one template reads many rows. Mapped to an object
with ``null`` values, it reads one row. Mapped to an object without ``null`` values,
it writes the title, the description, or an ``action_request`` of start, stop or
restart, which is carried out before the reply. Template keys with ``null`` are
filled in, and keys with values filter.
"""

from __future__ import annotations

import logging
from typing import Any

from cocalc_magics.server.errors import MethodError
from cocalc_magics.server.hub_methods import (
    RECENT_MS,
    Hub,
    now_ms,
    project_row_fields,
    valid_uuid,
)
from cocalc_magics.server.projects import iso_time
from cocalc_magics.server.store import now_ms as store_now_ms

logger = logging.getLogger(__name__)

TABLES = ("projects", "projects_all")
WRITABLE = {"project_id", "title", "description", "action_request"}
ACTIONS = ("start", "stop", "restart")


async def run_user_query(hub: Hub, account_id: str, opts: dict[str, Any]) -> Any:
    query = opts.get("query")
    if not isinstance(query, dict) or len(query) != 1:
        raise MethodError.thrown(
            'db.userQuery expects {"query": {"<table>": [{...}] or {...}}}'
        )
    ((table, template),) = query.items()
    if table not in TABLES:
        raise MethodError.thrown(
            f"table '{table}' is not available on the local cocalc-magics server; "
            f"use one of {', '.join(TABLES)}"
        )

    if isinstance(template, list):
        if len(template) != 1 or not isinstance(template[0], dict):
            raise MethodError.thrown(
                "a read-many query must contain exactly one template object"
            )
        rows = await project_rows(
            hub, account_id, template[0], recent_only=table == "projects"
        )
        return {table: rows}
    if not isinstance(template, dict):
        raise MethodError.thrown("a query template must be an object or a list of one")
    if any(value is None for value in template.values()):
        rows = await project_rows(hub, account_id, template)
        return {table: rows[0] if rows else None}
    await write_project(hub, account_id, template)
    return {}


async def project_rows(
    hub: Hub, account_id: str, template: dict[str, Any], recent_only: bool = False
) -> list[dict[str, Any]]:
    """Fill the template for every project of the account that matches its filters."""
    filters = {key: value for key, value in template.items() if value is not None}
    cutoff = now_ms() - RECENT_MS
    rows = []
    for project_id in hub.store.project_ids_of(account_id):
        project = hub.store.get_project(project_id)
        if project is None or (recent_only and project.last_edited_ms < cutoff):
            continue
        values = await project_values(hub, project, set(template))
        if any(values.get(key) != value for key, value in filters.items()):
            continue
        # NOTE: fields this server does not model come back as null.
        rows.append({key: values.get(key) for key in template})
    return rows


async def project_values(hub: Hub, project: Any, fields: set[str]) -> dict[str, Any]:
    runtime = hub.projects.runtime(project.project_id)
    values = project_row_fields(project)
    values["state"] = runtime.state_object()
    values["run_quota"] = runtime.run_quota()
    values["action_request"] = runtime.action_request
    if "status" in fields:
        # Measuring scans the process table, so it runs only when asked for.
        values["status"] = await runtime.status()
    return values


async def write_project(hub: Hub, account_id: str, values: dict[str, Any]) -> None:
    project_id = values.get("project_id")
    unknown = set(values) - WRITABLE
    if unknown:
        raise MethodError.thrown(
            f"cannot write {', '.join(sorted(unknown))} of a project on the local "
            "cocalc-magics server; writable fields are title, description and "
            "action_request"
        )
    if not valid_uuid(project_id) or not hub.store.is_collaborator(
        project_id, account_id
    ):
        raise MethodError.thrown("user must be a collaborator on the project")

    for name in ("title", "description"):
        if name in values:
            if not isinstance(values[name], str):
                raise MethodError.thrown(f"{name} must be a string")
            hub.store.update_project(project_id, **{name: values[name]})
    if "action_request" in values:
        await run_action(hub, project_id, values["action_request"])


async def run_action(hub: Hub, project_id: str, request: Any) -> None:
    """Carry out a start, stop or restart request and record its progress."""
    if not isinstance(request, dict) or request.get("action") not in ACTIONS:
        raise MethodError.thrown(
            'action_request must be {"action": "start" | "stop" | "restart", '
            '"time": <ISO time>}'
        )
    runtime = hub.projects.runtime(project_id)
    previous = runtime.action_request
    if previous and previous.get("time") == request.get("time") and request.get("time"):
        # CoCalc ignores a request whose time equals the previous one.
        return

    record = {**request, "started": iso_now()}
    runtime.action_request = record
    logger.info("project %s action %s", project_id, request["action"])
    try:
        hub.projects.touch(project_id, force=True)
        if request["action"] == "stop":
            await runtime.stop()
        elif request["action"] == "start":
            await runtime.start()
        else:
            await runtime.restart()
    except MethodError as error:
        record["err"] = error.text
        raise
    finally:
        record["finished"] = iso_now()


def iso_now() -> str:
    return iso_time(store_now_ms())
