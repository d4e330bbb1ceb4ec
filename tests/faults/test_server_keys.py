"""Every method the local server dispatches refuses a key that may not use it.

The method names come from the server's own dispatch tables, so a method added
later is covered without touching this file. For each one, and for each kind of
wrong key, the reply must be CoCalc's error envelope, and the call must change
nothing: the arguments would write, delete, start or stop things if they ran.
"""

from __future__ import annotations

import pytest

from cocalc_magics.server import LocalServer, hub_methods, project_methods
from tests.faults.conftest import _SCAN
from tests.support.local_server import is_error, raw_call

NO_KEY = "You must provide authentication via an API key."
PROJECT_UNKNOWN_KEY = "must sign in as project or account"
HUB_REJECTED_KEY = (
    "must be signed in and MUST provide an api key (cookies are not allowed)"
)
NOT_COLLABORATOR = "user must be a collaborator on the project"
OTHER_PROJECT_KEY = "project specific api key must match requested project"

PROJECT_METHOD_NAMES = sorted(
    {"ping", *project_methods.METHODS, *project_methods.NOT_PROVIDED}
)
HUB_METHOD_NAMES = sorted({"ping", *hub_methods.METHODS, *hub_methods.NOT_PROVIDED})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """An in-process server with a second account and a second project."""
    with LocalServer(tmp_path_factory.mktemp("keys-server")) as running:
        _SCAN.secrets.add(running.api_key)
        _SCAN.roots.append(running.data_dir)
        _, other_key = running.create_account(first_name="Other")
        _SCAN.secrets.add(other_key)
        other_project = raw_call(
            running.url,
            other_key,
            "hub",
            {"name": "projects.createProject", "args": [{"title": "theirs"}]},
        )
        scoped = raw_call(
            running.url,
            other_key,
            "hub",
            {
                "name": "system.manageApiKeys",
                "args": [
                    {"action": "create", "project_id": other_project, "name": "s"}
                ],
            },
        )
        running.other_key = other_key
        running.other_project = other_project
        assert not is_error(scoped), scoped
        running.other_project_key = scoped[0]["secret"]
        _SCAN.secrets.add(running.other_project_key)
        yield running


def harmful_args(name: str, server) -> list:
    """Arguments that would change something if the call were allowed."""
    return [
        {
            "path": "pwned.txt",
            "content": "pwned",
            "paths": ["keep.txt"],
            "src": "keep.txt",
            "dest": "moved.txt",
            "command": "touch pwned-by-exec.txt",
            "bash": True,
            "kernel": "python3",
            "input": "open('pwned-by-kernel.txt', 'w').close()",
            "pid": 1,
            "project_id": server.project_id,
            "title": "pwned",
            "account_id": server.account_id,
            "action": "create",
            "name": "pwned",
        }
    ]


def call(server, key, endpoint, name, *, project_id=None):
    body = {"name": name, "args": harmful_args(name, server)}
    if project_id is not None:
        body["project_id"] = project_id
    return raw_call(server.url, key, endpoint, body, timeout=30)


def home(server):
    return server.data_dir / "projects" / server.project_id


@pytest.fixture(scope="module", autouse=True)
def nothing_changed(server):
    """Plant a file, and after the module check that no refused call touched it."""
    (home(server) / "keep.txt").write_text("kept")
    projects_before = project_count(server)
    yield
    assert (home(server) / "keep.txt").read_text() == "kept"
    for name in ("pwned.txt", "moved.txt", "pwned-by-exec.txt", "pwned-by-kernel.txt"):
        assert not (home(server) / name).exists(), name
    assert project_count(server) == projects_before


def project_count(server) -> int:
    query = {"projects_all": [{"project_id": None, "title": None}]}
    body = {"name": "db.userQuery", "args": [{"query": query}]}
    reply = raw_call(server.url, server.api_key, "hub", body)
    return len(reply["projects_all"])


@pytest.mark.parametrize("name", PROJECT_METHOD_NAMES)
def test_project_methods_refuse_wrong_keys(server, name):
    target = server.project_id
    assert call(server, None, "project", name, project_id=target) == {"error": NO_KEY}
    assert call(
        server, "sk-unknown-00000000000000", "project", name, project_id=target
    ) == {"error": PROJECT_UNKNOWN_KEY}
    # A valid key of an account that is not a collaborator on the project.
    assert call(server, server.other_key, "project", name, project_id=target) == {
        "error": NOT_COLLABORATOR
    }
    # A project key used for a project other than its own.
    reply = call(server, server.other_project_key, "project", name, project_id=target)
    assert reply == {"error": OTHER_PROJECT_KEY}


@pytest.mark.parametrize("name", HUB_METHOD_NAMES)
def test_hub_methods_refuse_wrong_keys(server, name):
    assert call(server, None, "hub", name) == {"error": NO_KEY}
    assert call(server, "sk-unknown-00000000000000", "hub", name) == {
        "error": HUB_REJECTED_KEY
    }
    assert call(server, server.other_project_key, "hub", name) == {
        "error": HUB_REJECTED_KEY
    }


PROJECT_TARGETED_HUB_METHODS = sorted(
    name
    for name in hub_methods.METHODS
    if name.startswith("projects.") and name != "projects.createProject"
) + ["jupyter.kernels"]


@pytest.mark.parametrize("name", PROJECT_TARGETED_HUB_METHODS)
def test_hub_refuses_other_accounts_project(server, name):
    # What the call would have changed is checked by the module's fixture.
    reply = call(server, server.other_key, "hub", name)
    assert is_error(reply), (name, reply)


def test_every_dispatched_method_is_covered():
    # The names come from the dispatch tables; this guards against empty tables.
    assert "system.exec" in PROJECT_METHOD_NAMES
    assert "system.jupyterExecute" in PROJECT_METHOD_NAMES
    assert "projects.start" in HUB_METHOD_NAMES
    assert len(PROJECT_METHOD_NAMES) >= 18 and len(HUB_METHOD_NAMES) >= 16


# Paths: the methods the server tests do not already cover for escapes.

ESCAPING_CALLS = [
    ("editor.newFile", ["../escaped.txt"], "contains '..'"),
    ("editor.newFile", ["out/escaped.txt"], "symbolic link"),
    ("system.canonicalPaths", [["ok", "../.."]], "contains '..'"),
    ("system.canonicalPaths", [["out/x"]], "symbolic link"),
    ("system.realpath", ["out"], "symbolic link"),
    ("system.listing", [{"path": "out/.."}], "contains '..'"),
    ("system.readTextFileFromProject", [{"path": "a/../../state.sqlite3"}], ".."),
]


@pytest.mark.parametrize(("name", "args", "fragment"), ESCAPING_CALLS)
def test_paths_stay_inside_home(server, tmp_path, name, args, fragment):
    outside = tmp_path / "outside"
    outside.mkdir()
    link = home(server) / "out"
    link.unlink(missing_ok=True)
    link.symlink_to(outside)
    body = {"name": name, "args": args, "project_id": server.project_id}
    reply = raw_call(server.url, server.api_key, "project", body)
    assert is_error(reply), reply
    assert fragment in reply["error"]
    assert list(outside.iterdir()) == []
    assert not (server.data_dir / "projects" / "escaped.txt").exists()


def test_in_process_server_loopback_only(server):
    import os

    import psutil

    port = int(server.url.rsplit(":", 1)[1])
    listeners = [
        connection.laddr
        for connection in psutil.Process(os.getpid()).net_connections("inet")
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port
    ]
    assert listeners and {address.ip for address in listeners} == {"127.0.0.1"}
