"""The methods served by the hub (``POST /api/conat/hub``).

The hub writes the caller's account id into ``args[0]`` of every method that needs
an identity, overwriting any ``account_id`` the caller sent, so a caller cannot act
as another account.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cocalc_magics.server.auth import create_api_key
from cocalc_magics.server.errors import MethodError, not_implemented
from cocalc_magics.server.projects import (
    QUOTA_FIELDS,
    ProjectManager,
    effective_settings,
    iso_time,
    number_or_none,
)
from cocalc_magics.server.store import ApiKeyRow, ProjectRow, Store

logger = logging.getLogger(__name__)

# CoCalc's ``projects`` table covers projects edited in the last six weeks only.
RECENT_MS = 6 * 7 * 24 * 3600 * 1000
NAME_COLORS = ("#a0c4ff", "#ffadad", "#caffbf", "#ffd6a5", "#bdb2ff", "#9bf6ff")

# Hub methods of CoCalc that this server does not provide.
NOT_PROVIDED = {
    "system.getCustomize",
    "system.userSearch",
    "projects.copyPathBetweenProjects",
    "projects.inviteCollaborator",
    "projects.inviteCollaboratorWithoutAccount",
    "projects.changeUserType",
    "jupyter.execute",
    "purchases.getBalance",
    "purchases.getMinBalance",
    "messages.send",
    "messages.get",
    "sync.history",
    "db.touch",
    "db.fileUseTimes",
}
NOT_PROVIDED_GROUPS = {"org", "purchases", "messages"}


@dataclass
class Hub:
    """The store and the running projects, shared by all hub methods."""

    store: Store
    projects: ProjectManager


Method = Callable[[Hub, str, list], Awaitable[Any]]


def now_ms() -> int:
    return int(time.time() * 1000)


def first_object(args: list) -> dict[str, Any]:
    """Return ``args[0]``, which identity injection has made an object."""
    return args[0]


def valid_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def project_of(hub: Hub, account_id: str, opts: dict[str, Any], action: str) -> str:
    """Return the requested project id after the collaborator check of ``action``."""
    project_id = opts.get("project_id")
    if not valid_uuid(project_id) or not hub.store.is_collaborator(
        project_id, account_id
    ):
        raise MethodError.thrown(f"must be collaborator on project to {action}")
    return project_id


# -- system -----------------------------------------------------------------------


async def system_ping(hub: Hub, account_id: str, args: list) -> Any:
    return {"now": now_ms()}


async def system_test(hub: Hub, account_id: str, args: list) -> Any:
    return {"account_id": account_id, "server_time": now_ms()}


async def system_get_names(hub: Hub, account_id: str, args: list) -> Any:
    ids = args[0] if args else None
    if not isinstance(ids, list):
        raise MethodError.thrown(
            'system.getNames expects a list of account ids: [["A"]]'
        )
    names = {}
    for other_id in ids:
        row = hub.store.get_account(other_id) if isinstance(other_id, str) else None
        if row is None:
            continue
        color = NAME_COLORS[uuid.UUID(other_id).int % len(NAME_COLORS)]
        names[other_id] = {
            "first_name": row["first_name"],
            "last_name": row["last_name"],
            "profile": {"color": color},
        }
    return names


def describe_key(row: ApiKeyRow) -> dict[str, Any]:
    described: dict[str, Any] = {
        "id": row.id,
        "account_id": row.account_id,
        "name": row.name,
        "trunc": row.trunc,
        "created": iso_time(row.created_ms),
        "expire": None if row.expire_ms is None else iso_time(row.expire_ms),
        "last_active": None
        if row.last_active_ms is None
        else iso_time(row.last_active_ms),
    }
    if row.project_id is not None:
        described["project_id"] = row.project_id
    return described


def parse_expire(value: Any) -> int | None:
    """Read an expiry given as ms since the epoch or as an ISO-8601 text."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        try:
            return int(
                datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000
            )
        except ValueError:
            pass
    raise MethodError.thrown(
        f"expire must be a time in ms since the epoch or an ISO-8601 text, not {value!r}"
    )


async def system_manage_api_keys(hub: Hub, account_id: str, args: list) -> Any:
    """List, create, edit or delete the caller's keys (project keys with project_id)."""
    opts = first_object(args)
    action = opts.get("action")
    project_id = opts.get("project_id")
    if project_id is not None:
        project_of(hub, account_id, opts, "manage its api keys")

    if action == "get":
        return [
            describe_key(row) for row in hub.store.list_api_keys(account_id, project_id)
        ]
    if action == "create":
        key_id, secret = create_api_key(
            hub.store,
            account_id,
            project_id=project_id,
            name=str(opts.get("name") or ""),
            expire_ms=parse_expire(opts.get("expire")),
        )
        described = describe_key(hub.store.get_api_key(key_id))
        described["secret"] = secret
        logger.info("account %s created api key %s", account_id, key_id)
        return [described]
    if action in ("delete", "edit"):
        row = owned_key(hub, account_id, opts.get("id"))
        if action == "delete":
            hub.store.delete_api_key(row.id)
            logger.info("account %s deleted api key %s", account_id, row.id)
        else:
            expire = parse_expire(opts["expire"]) if "expire" in opts else False
            hub.store.update_api_key(row.id, name=opts.get("name"), expire_ms=expire)
        return None
    raise MethodError.thrown(
        f"unknown action {action!r}; use 'get', 'create', 'edit' or 'delete'"
    )


def owned_key(hub: Hub, account_id: str, key_id: Any) -> ApiKeyRow:
    row = hub.store.get_api_key(key_id) if isinstance(key_id, int) else None
    if row is None or row.account_id != account_id:
        raise MethodError.thrown(f"api key {key_id!r} not found for this account")
    return row


# -- projects ---------------------------------------------------------------------


async def create_project(hub: Hub, account_id: str, args: list) -> Any:
    opts = first_object(args)
    title = opts.get("title") or ""
    description = opts.get("description") or ""
    if not isinstance(title, str) or not isinstance(description, str):
        raise MethodError.thrown("title and description must be strings")
    project_id = hub.store.create_project(account_id, title, description)
    runtime = hub.projects.runtime(project_id)
    runtime.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    logger.info("account %s created project %s", account_id, project_id)
    if opts.get("start"):
        runtime.begin_start()
    return project_id


async def start_project(hub: Hub, account_id: str, args: list) -> Any:
    project_id = project_of(hub, account_id, first_object(args), "start it")
    hub.projects.touch(project_id, force=True)
    await hub.projects.runtime(project_id).start()
    return None


async def stop_project(hub: Hub, account_id: str, args: list) -> Any:
    project_id = project_of(hub, account_id, first_object(args), "stop it")
    await hub.projects.runtime(project_id).stop()
    return None


async def touch_project(hub: Hub, account_id: str, args: list) -> Any:
    project_id = project_of(hub, account_id, first_object(args), "touch it")
    hub.projects.touch(project_id, force=True)
    hub.projects.runtime(project_id).begin_start()
    return None


async def project_state(hub: Hub, account_id: str, args: list) -> Any:
    project_id = project_of(hub, account_id, first_object(args), "get state")
    return hub.projects.runtime(project_id).state_object()


async def project_status(hub: Hub, account_id: str, args: list) -> Any:
    project_id = project_of(hub, account_id, first_object(args), "get status")
    return await hub.projects.runtime(project_id).status()


async def set_quotas(hub: Hub, account_id: str, args: list) -> Any:
    """Merge admin quotas into the project's settings (site admins only)."""
    opts = first_object(args)
    if not hub.store.is_admin(account_id):
        raise MethodError.thrown("Must be an admin to do admin search.")
    project_id = opts.get("project_id")
    project = hub.store.get_project(project_id) if valid_uuid(project_id) else None
    if project is None:
        raise MethodError.thrown(f"project {project_id!r} not found")

    settings = dict(project.settings)
    for name in QUOTA_FIELDS:
        if name not in opts or opts[name] is None:
            continue
        if number_or_none(opts[name]) is None:
            raise MethodError.thrown(
                f"quota {name} must be a number, not {opts[name]!r}"
            )
        settings[name] = opts[name]
    runtime = hub.projects.runtime(project_id)
    before = runtime.enforced_quotas()
    hub.store.update_project(project_id, settings=settings)
    logger.info("admin %s set quotas of project %s", account_id, project_id)

    # CoCalc restarts an active project in the background when its quota changed,
    # so that the new limits apply to every process. Only the quotas this server
    # enforces (memory and cores) cause a restart here.
    if runtime.state == "running" and runtime.enforced_quotas() != before:
        asyncio.ensure_future(runtime.restart())
    return None


def collaborator_opts(args: list) -> tuple[list[str], list[str]]:
    opts = first_object(args).get("opts")
    if not isinstance(opts, dict):
        raise MethodError.thrown(
            'expected {"opts": {"project_id": "P", "account_id": "A"}} as args[0]'
        )
    project_ids = opts.get("project_id")
    account_ids = opts.get("account_id")
    if isinstance(project_ids, str):
        project_ids = [project_ids]
    if isinstance(account_ids, str):
        account_ids = [account_ids]
    if (
        not isinstance(project_ids, list)
        or not isinstance(account_ids, list)
        or len(project_ids) != len(account_ids)
    ):
        raise MethodError.thrown(
            "opts.project_id and opts.account_id must be ids or lists of equal length"
        )
    return project_ids, account_ids


async def add_collaborator(hub: Hub, account_id: str, args: list) -> Any:
    project_ids, account_ids = collaborator_opts(args)
    for project_id, other_id in zip(project_ids, account_ids):
        if not valid_uuid(project_id) or not hub.store.is_collaborator(
            project_id, account_id
        ):
            raise MethodError.thrown("user must be a collaborator")
        if not valid_uuid(other_id) or hub.store.get_account(other_id) is None:
            raise MethodError.thrown(f"account {other_id!r} not found")
        hub.store.add_collaborator(project_id, other_id, "collaborator")
        logger.info("added %s to project %s", other_id, project_id)
    return {"project_id": project_ids}


async def remove_collaborator(hub: Hub, account_id: str, args: list) -> Any:
    project_ids, account_ids = collaborator_opts(args)
    for project_id, other_id in zip(project_ids, account_ids):
        if not valid_uuid(project_id) or not hub.store.is_collaborator(
            project_id, account_id
        ):
            raise MethodError.thrown("user must be a collaborator")
        if hub.store.collaborators(project_id).get(other_id) == "owner":
            raise MethodError.thrown("cannot remove the owner of a project")
        hub.store.remove_collaborator(project_id, other_id)
        logger.info("removed %s from project %s", other_id, project_id)
    return None


async def delete_project(hub: Hub, account_id: str, args: list) -> Any:
    project_id = project_of(hub, account_id, first_object(args), "delete it")
    await hub.projects.runtime(project_id).stop()
    hub.store.update_project(project_id, deleted=1)
    logger.info("account %s deleted project %s", account_id, project_id)
    return None


# -- jupyter and db ---------------------------------------------------------------


async def jupyter_kernels(hub: Hub, account_id: str, args: list) -> Any:
    opts = first_object(args)
    if opts.get("project_id") is not None:
        project_of(hub, account_id, opts, "list its kernels")
    service = hub.projects.jupyter_service()
    return await asyncio.get_running_loop().run_in_executor(None, service.kernel_specs)


async def user_query(hub: Hub, account_id: str, args: list) -> Any:
    from cocalc_magics.server.queries import run_user_query

    return await run_user_query(hub, account_id, first_object(args))


# Methods whose first argument gets the caller's account id ("inject").
INJECT = {
    "system.test",
    "system.manageApiKeys",
    "projects.createProject",
    "projects.start",
    "projects.stop",
    "projects.touch",
    "projects.state",
    "projects.status",
    "projects.setQuotas",
    "projects.addCollaborator",
    "projects.removeCollaborator",
    "projects.deleteProject",
    "jupyter.kernels",
    "db.userQuery",
}

METHODS: dict[str, Method] = {
    "system.ping": system_ping,
    "system.test": system_test,
    "system.getNames": system_get_names,
    "system.manageApiKeys": system_manage_api_keys,
    "projects.createProject": create_project,
    "projects.start": start_project,
    "projects.stop": stop_project,
    "projects.touch": touch_project,
    "projects.state": project_state,
    "projects.status": project_status,
    "projects.setQuotas": set_quotas,
    "projects.addCollaborator": add_collaborator,
    "projects.removeCollaborator": remove_collaborator,
    "projects.deleteProject": delete_project,
    "jupyter.kernels": jupyter_kernels,
    "db.userQuery": user_query,
}


async def call_hub_method(hub: Hub, account_id: str, name: str, args: list) -> Any:
    """Run one hub method by name for the given account."""
    if name == "ping":
        return "pong"
    method = METHODS.get(name)
    if method is None:
        if name in NOT_PROVIDED or name.split(".", 1)[0] in NOT_PROVIDED_GROUPS:
            raise not_implemented(name)
        raise MethodError.thrown(f"unknown function '{name}'")
    if name in INJECT:
        args = list(args)
        if not args or args[0] is None:
            args[:1] = [{}]
        if not isinstance(args[0], dict):
            raise MethodError.thrown(f"{name} expects an options object as args[0]")
        args[0] = {**args[0], "account_id": account_id}
    return await method(hub, account_id, args)


def project_row_fields(project: ProjectRow) -> dict[str, Any]:
    """Stored fields of a project as ``db.userQuery`` reports them."""
    return {
        "project_id": project.project_id,
        "title": project.title,
        "description": project.description,
        "created": iso_time(project.created_ms),
        "last_edited": iso_time(project.last_edited_ms),
        "deleted": project.deleted,
        "users": {user: {"group": group} for user, group in project.users.items()},
        "settings": effective_settings(project.settings),
        "site_license": {},
    }
