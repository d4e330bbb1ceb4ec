"""Hub methods over HTTP, with several accounts of an in-process server."""

from __future__ import annotations

import time
import uuid

import psutil
import pytest

from tests.support.local_server import is_error, raw_call, wait_until


@pytest.fixture(scope="module")
def accounts(inprocess_server):
    """Two more plain accounts: (account_id, key) each."""
    return {
        "bob": inprocess_server.create_account("Bob", "Builder"),
        "eve": inprocess_server.create_account("Eve", "Outsider"),
    }


def hub(server, key, name, *args, timeout_ms=None):
    body = {"name": name, "args": list(args)}
    if timeout_ms is not None:
        body["timeout"] = timeout_ms
    return raw_call(server.url, key, "hub", body)


def project(server, key, project_id, name, *args):
    body = {"name": name, "args": list(args), "project_id": project_id}
    return raw_call(server.url, key, "project", body)


def admin(server, name, *args, **kwargs):
    return hub(server, server.api_key, name, *args, **kwargs)


def test_system_test_and_identity_injection(inprocess_server, accounts):
    bob_id, bob_key = accounts["bob"]
    reply = hub(
        inprocess_server,
        bob_key,
        "system.test",
        {"account_id": inprocess_server.account_id},
    )
    assert reply["account_id"] == bob_id


def test_get_names(inprocess_server, accounts):
    bob_id, _ = accounts["bob"]
    names = admin(inprocess_server, "system.getNames", [bob_id, str(uuid.uuid4())])
    assert list(names) == [bob_id]
    assert names[bob_id]["first_name"] == "Bob"
    assert names[bob_id]["last_name"] == "Builder"
    assert names[bob_id]["profile"]["color"].startswith("#")


def test_manage_api_keys(inprocess_server, accounts):
    _, bob_key = accounts["bob"]
    created = hub(
        inprocess_server,
        bob_key,
        "system.manageApiKeys",
        {"action": "create", "name": "ci"},
    )
    assert len(created) == 1
    secret = created[0]["secret"]
    assert secret.startswith("sk-") and len(secret) == 25
    assert created[0]["trunc"] == f"{secret[:3]}...{secret[-6:]}"

    listed = hub(inprocess_server, bob_key, "system.manageApiKeys", {"action": "get"})
    assert created[0]["id"] in [key["id"] for key in listed]
    assert all("secret" not in key for key in listed)
    assert (
        hub(inprocess_server, secret, "system.test")["account_id"] == accounts["bob"][0]
    )

    edited = hub(
        inprocess_server,
        bob_key,
        "system.manageApiKeys",
        {"action": "edit", "id": created[0]["id"], "name": "renamed"},
    )
    assert edited is None
    listed = hub(inprocess_server, bob_key, "system.manageApiKeys", {"action": "get"})
    assert {key["id"]: key["name"] for key in listed}[created[0]["id"]] == "renamed"

    deleted = hub(
        inprocess_server,
        bob_key,
        "system.manageApiKeys",
        {"action": "delete", "id": created[0]["id"]},
    )
    assert deleted is None
    assert is_error(hub(inprocess_server, secret, "system.test"))


def test_api_key_storage_has_no_secret(inprocess_server, accounts):
    import sqlite3

    _, bob_key = accounts["bob"]
    created = hub(
        inprocess_server, bob_key, "system.manageApiKeys", {"action": "create"}
    )
    secret = created[0]["secret"]
    raw = (inprocess_server.data_dir / "state.sqlite3").read_bytes()
    assert secret.encode() not in raw
    assert secret[3:19].encode() not in raw
    database = sqlite3.connect(inprocess_server.data_dir / "state.sqlite3")
    dumped = "\n".join(database.iterdump())
    database.close()
    assert secret[3:19] not in dumped


def test_expired_key_stops_working(inprocess_server, accounts):
    _, bob_key = accounts["bob"]
    soon = int(time.time() * 1000) + 500
    created = hub(
        inprocess_server,
        bob_key,
        "system.manageApiKeys",
        {"action": "create", "expire": soon},
    )
    secret = created[0]["secret"]
    assert "account_id" in hub(inprocess_server, secret, "system.test")
    time.sleep(0.7)
    assert is_error(hub(inprocess_server, secret, "system.test"))


def test_project_keys_follow_collaboration(inprocess_server, accounts):
    bob_id, bob_key = accounts["bob"]
    project_id = admin(inprocess_server, "projects.createProject", {"title": "shared"})
    opts = {"opts": {"project_id": project_id, "account_id": bob_id}}
    assert admin(inprocess_server, "projects.addCollaborator", opts) == {
        "project_id": [project_id]
    }

    created = hub(
        inprocess_server,
        bob_key,
        "system.manageApiKeys",
        {"action": "create", "project_id": project_id},
    )
    key = created[0]["secret"]
    assert created[0]["project_id"] == project_id
    listed = hub(
        inprocess_server,
        bob_key,
        "system.manageApiKeys",
        {"action": "get", "project_id": project_id},
    )
    assert [item["id"] for item in listed] == [created[0]["id"]]
    assert (
        raw_call(inprocess_server.url, key, "project", {"name": "system.test"})[
            "project_id"
        ]
        == project_id
    )

    # A project key dies with its creator's collaboration.
    assert admin(inprocess_server, "projects.removeCollaborator", opts) is None
    reply = raw_call(inprocess_server.url, key, "project", {"name": "system.test"})
    assert reply == {"error": "must sign in as project or account"}
    admin(inprocess_server, "projects.stop", {"project_id": project_id})


def test_create_project_and_lifecycle(inprocess_server):
    project_id = admin(
        inprocess_server,
        "projects.createProject",
        {"title": "Lab 3", "description": "d"},
    )
    uuid.UUID(project_id)
    assert (inprocess_server.data_dir / "projects" / project_id).is_dir()
    state = admin(inprocess_server, "projects.state", {"project_id": project_id})
    assert state["state"] == "opened"
    assert state["time"].endswith("Z")
    assert admin(inprocess_server, "projects.status", {"project_id": project_id}) == {}

    assert admin(inprocess_server, "projects.start", {"project_id": project_id}) is None
    assert (
        admin(inprocess_server, "projects.state", {"project_id": project_id})["state"]
        == "running"
    )

    job = project(
        inprocess_server,
        inprocess_server.api_key,
        project_id,
        "system.exec",
        {
            "command": "python3 -c 'x=bytearray(20_000_000); import time; time.sleep(30)'",
            "async_call": True,
        },
    )
    time.sleep(0.5)
    status = admin(inprocess_server, "projects.status", {"project_id": project_id})
    assert status["memory"]["rss"] > 15_000
    assert status["processes"]["count"] >= 1
    assert status["start_ts"] <= time.time() * 1000

    assert admin(inprocess_server, "projects.stop", {"project_id": project_id}) is None
    assert (
        admin(inprocess_server, "projects.state", {"project_id": project_id})["state"]
        == "opened"
    )
    reply = project(
        inprocess_server,
        inprocess_server.api_key,
        project_id,
        "system.exec",
        {"async_get": job["job_id"]},
    )
    assert "does not exist" in reply["error"]

    # touch starts the project in the background.
    assert admin(inprocess_server, "projects.touch", {"project_id": project_id}) is None
    wait_until(
        lambda: (
            admin(inprocess_server, "projects.state", {"project_id": project_id})[
                "state"
            ]
            == "running"
        )
    )
    admin(inprocess_server, "projects.stop", {"project_id": project_id})


def test_create_project_with_start(inprocess_server):
    project_id = admin(inprocess_server, "projects.createProject", {"start": True})
    wait_until(
        lambda: (
            admin(inprocess_server, "projects.state", {"project_id": project_id})[
                "state"
            ]
            == "running"
        )
    )
    admin(inprocess_server, "projects.stop", {"project_id": project_id})


def test_project_call_starts_stopped_project(inprocess_server):
    project_id = admin(inprocess_server, "projects.createProject", {})
    reply = project(
        inprocess_server, inprocess_server.api_key, project_id, "system.ping"
    )
    assert "now" in reply
    assert (
        admin(inprocess_server, "projects.state", {"project_id": project_id})["state"]
        == "running"
    )
    admin(inprocess_server, "projects.stop", {"project_id": project_id})


@pytest.mark.parametrize(
    "name, action",
    [
        ("projects.start", "start it"),
        ("projects.stop", "stop it"),
        ("projects.touch", "touch it"),
        ("projects.state", "get state"),
        ("projects.status", "get status"),
    ],
)
def test_non_collaborator_errors(inprocess_server, accounts, name, action):
    _, eve_key = accounts["eve"]
    for project_id in (inprocess_server.project_id, str(uuid.uuid4()), "bad"):
        reply = hub(inprocess_server, eve_key, name, {"project_id": project_id})
        assert reply == {"error": f"Error: must be collaborator on project to {action}"}


def test_non_collaborator_project_endpoint(inprocess_server, accounts):
    _, eve_key = accounts["eve"]
    reply = project(
        inprocess_server, eve_key, inprocess_server.project_id, "system.ping"
    )
    assert reply == {"error": "user must be a collaborator on the project"}


def test_collaborator_changes(inprocess_server, accounts):
    bob_id, bob_key = accounts["bob"]
    eve_id, eve_key = accounts["eve"]
    project_id = admin(inprocess_server, "projects.createProject", {"title": "collab"})
    opts = {"opts": {"project_id": project_id, "account_id": bob_id}}

    reply = hub(inprocess_server, eve_key, "projects.removeCollaborator", opts)
    assert reply == {"error": "Error: user must be a collaborator"}
    reply = hub(
        inprocess_server,
        eve_key,
        "projects.addCollaborator",
        {"opts": {"project_id": project_id, "account_id": eve_id}},
    )
    assert reply == {"error": "Error: user must be a collaborator"}

    admin(inprocess_server, "projects.addCollaborator", opts)
    assert "now" in project(inprocess_server, bob_key, project_id, "system.ping")
    owner = {
        "opts": {"project_id": project_id, "account_id": inprocess_server.account_id}
    }
    assert (
        "owner"
        in hub(inprocess_server, bob_key, "projects.removeCollaborator", owner)["error"]
    )
    admin(inprocess_server, "projects.removeCollaborator", opts)
    reply = project(inprocess_server, bob_key, project_id, "system.ping")
    assert reply == {"error": "user must be a collaborator on the project"}

    both = {
        "opts": {"project_id": [project_id, project_id], "account_id": [bob_id, eve_id]}
    }
    assert admin(inprocess_server, "projects.addCollaborator", both) == {
        "project_id": [project_id, project_id]
    }
    admin(inprocess_server, "projects.stop", {"project_id": project_id})


def test_set_quotas_admin_only(inprocess_server, accounts):
    _, bob_key = accounts["bob"]
    project_id = inprocess_server.project_id
    reply = hub(
        inprocess_server,
        bob_key,
        "projects.setQuotas",
        {"project_id": project_id, "memory": 2000},
    )
    assert reply == {"error": "Error: Must be an admin to do admin search."}
    reply = admin(
        inprocess_server,
        "projects.setQuotas",
        {"project_id": project_id, "memory": "abc"},
    )
    assert "memory must be a number" in reply["error"]


def test_set_quotas_stored_and_enforced(inprocess_server):
    project_id = admin(inprocess_server, "projects.createProject", {"title": "quota"})
    assert admin(inprocess_server, "projects.start", {"project_id": project_id}) is None
    reply = admin(
        inprocess_server,
        "projects.setQuotas",
        {"project_id": project_id, "memory": 300, "cores": 1, "mintime": 600},
    )
    assert reply is None
    wait_until(
        lambda: (
            admin(inprocess_server, "projects.state", {"project_id": project_id})[
                "state"
            ]
            == "running"
        ),
        timeout=10,
    )
    query = {
        "projects_all": [
            {"project_id": project_id, "settings": None, "run_quota": None}
        ]
    }
    row = admin(inprocess_server, "db.userQuery", {"query": query})["projects_all"][0]
    assert row["settings"]["memory"] == 300
    assert row["settings"]["disk_quota"] == 3000
    assert row["run_quota"]["memory_limit"] == 300
    assert row["run_quota"]["idle_timeout"] == 600

    limits = project(
        inprocess_server,
        inprocess_server.api_key,
        project_id,
        "system.exec",
        {
            "command": "ulimit -v; python3 -c 'import os; print(len(os.sched_getaffinity(0)))'"
        },
    )
    virtual_kib, cores = limits["stdout"].split()
    assert int(virtual_kib) == 300 * 1024
    assert cores == "1"
    reply = project(
        inprocess_server,
        inprocess_server.api_key,
        project_id,
        "system.exec",
        {"command": "python3 -c 'x = bytearray(600_000_000)'", "err_on_exit": False},
    )
    assert reply["exit_code"] != 0
    assert "MemoryError" in reply["stderr"]
    admin(inprocess_server, "projects.stop", {"project_id": project_id})


def test_delete_project(inprocess_server):
    project_id = admin(inprocess_server, "projects.createProject", {"title": "gone"})
    assert (
        admin(inprocess_server, "projects.deleteProject", {"project_id": project_id})
        is None
    )
    query = {"projects_all": [{"project_id": project_id, "deleted": None}]}
    assert admin(inprocess_server, "db.userQuery", {"query": query})[
        "projects_all"
    ] == [{"project_id": project_id, "deleted": True}]


def test_user_query_reads(inprocess_server, accounts):
    _, eve_key = accounts["eve"]
    template = {
        "project_id": inprocess_server.project_id,
        "title": None,
        "description": None,
        "state": None,
        "status": None,
        "settings": None,
        "run_quota": None,
        "site_license": None,
        "last_edited": None,
        "users": None,
        "created": None,
    }
    admin(
        inprocess_server, "projects.start", {"project_id": inprocess_server.project_id}
    )
    rows = admin(
        inprocess_server, "db.userQuery", {"query": {"projects_all": [template]}}
    )
    row = rows["projects_all"][0]
    assert row["title"] == "Local project"
    assert row["state"]["state"] == "running"
    assert row["settings"] == {
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
    assert row["run_quota"]["cpu_limit"] == 1
    assert row["users"] == {inprocess_server.account_id: {"group": "owner"}}
    assert row["last_edited"].endswith("Z")
    assert "start_ts" in row["status"]

    one = admin(
        inprocess_server,
        "db.userQuery",
        {
            "query": {
                "projects": {"project_id": inprocess_server.project_id, "title": None}
            }
        },
    )
    assert one == {
        "projects": {
            "project_id": inprocess_server.project_id,
            "title": "Local project",
        }
    }
    outsider = hub(
        inprocess_server,
        eve_key,
        "db.userQuery",
        {"query": {"projects_all": [{"project_id": None, "title": None}]}},
    )
    seen = [row["project_id"] for row in outsider["projects_all"]]
    assert inprocess_server.project_id not in seen
    reply = admin(
        inprocess_server, "db.userQuery", {"query": {"accounts": {"first_name": None}}}
    )
    assert "not available" in reply["error"]


def test_user_query_title_filter_and_write(inprocess_server):
    project_id = admin(inprocess_server, "projects.createProject", {"title": "before"})
    write = {
        "projects": {"project_id": project_id, "title": "after", "description": "new"}
    }
    assert admin(inprocess_server, "db.userQuery", {"query": write}) == {}
    rows = admin(
        inprocess_server,
        "db.userQuery",
        {
            "query": {
                "projects_all": [
                    {"project_id": None, "title": "after", "description": None}
                ]
            }
        },
    )["projects_all"]
    assert rows == [{"project_id": project_id, "title": "after", "description": "new"}]


def test_action_request_restart(inprocess_server):
    project_id = admin(inprocess_server, "projects.createProject", {"title": "actions"})
    api_key = inprocess_server.api_key
    job = project(
        inprocess_server,
        api_key,
        project_id,
        "system.exec",
        {"command": "sleep", "args": ["30"], "async_call": True},
    )
    request = {"action": "restart", "time": "2026-07-01T10:00:00.000Z"}
    reply = admin(
        inprocess_server,
        "db.userQuery",
        {"query": {"projects": {"project_id": project_id, "action_request": request}}},
        timeout_ms=60000,
    )
    assert reply == {}
    state = admin(inprocess_server, "projects.state", {"project_id": project_id})
    assert state["state"] == "running"
    reply = project(
        inprocess_server,
        api_key,
        project_id,
        "system.exec",
        {"async_get": job["job_id"]},
    )
    assert "does not exist" in reply["error"]
    row = admin(
        inprocess_server,
        "db.userQuery",
        {"query": {"projects": {"project_id": project_id, "action_request": None}}},
    )
    assert row["projects"]["action_request"]["finished"].endswith("Z")

    stop = {"action": "stop", "time": "2026-07-01T10:01:00.000Z"}
    admin(
        inprocess_server,
        "db.userQuery",
        {"query": {"projects": {"project_id": project_id, "action_request": stop}}},
    )
    assert (
        admin(inprocess_server, "projects.state", {"project_id": project_id})["state"]
        == "opened"
    )
    bad = {"action": "explode", "time": "x"}
    reply = admin(
        inprocess_server,
        "db.userQuery",
        {"query": {"projects": {"project_id": project_id, "action_request": bad}}},
    )
    assert "action_request must be" in reply["error"]


def test_cocalc_api_projects_get(inprocess_server):
    cocalc_api = pytest.importorskip("cocalc_api")
    client = cocalc_api.Hub(api_key=inprocess_server.api_key, host=inprocess_server.url)
    projects = client.projects.get(all=True)
    assert inprocess_server.project_id in [p["project_id"] for p in projects]
    only = client.projects.get(project_id=inprocess_server.project_id, all=True)
    assert [p["project_id"] for p in only] == [inprocess_server.project_id]


def test_stop_kills_jupyter_kernels(local_server):
    pytest.importorskip("cocalc_magics.server.jupyter")
    project_id = local_server.hub("projects.createProject", {"title": "kernels"})
    body = {
        "name": "system.jupyterExecute",
        "project_id": project_id,
        "args": [{"kernel": "python3", "input": "1 + 1"}],
        "timeout": 90000,
    }
    assert local_server.call("project", body) == [{"data": {"text/plain": "2"}}]
    listing = {"name": "system.listJupyterKernels", "project_id": project_id}
    kernels = wait_until(lambda: local_server.call("project", listing), timeout=30)
    pids = [kernel["pid"] for kernel in kernels]

    assert local_server.hub("projects.stop", {"project_id": project_id}) is None

    def gone(pid):
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_until(lambda: all(gone(pid) for pid in pids), timeout=10)
    assert local_server.call("project", listing) == []
    local_server.hub("projects.stop", {"project_id": project_id})
