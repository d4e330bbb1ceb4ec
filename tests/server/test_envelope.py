"""The bridge rules over real HTTP: statuses, envelope, authentication, timeouts."""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
import requests

from tests.support.local_server import authorization, is_error, raw_call, wait_until

HUB_INVALID = "must be signed in and MUST provide an api key (cookies are not allowed)"
PROJECT_INVALID = "must sign in as project or account"
NO_KEY = "You must provide authentication via an API key."
SPLIT_ERROR = "TypeError: Cannot read properties of undefined (reading 'split')"


def post(server, endpoint, data, headers=None, method="POST"):
    return requests.request(
        method, f"{server.url}/api/conat/{endpoint}", data=data, headers=headers or {}
    )


def test_invalid_json_is_400_plain_text(local_server):
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {local_server.api_key}",
    }
    response = post(local_server, "hub", b"{not json", headers)
    assert response.status_code == 400
    assert response.text == "Invalid JSON"
    assert response.headers["Content-Type"].startswith("text/plain")


def test_body_over_one_megabyte_is_413(local_server):
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {local_server.api_key}",
    }
    body = json.dumps({"name": "system.ping", "pad": "x" * (1024 * 1024)})
    response = post(local_server, "hub", body, headers)
    assert response.status_code == 413
    assert response.text == "Body exceeded 1mb limit"


def test_body_just_under_limit_is_accepted(local_server):
    padding = "x" * (1024 * 1024 - 100)
    reply = local_server.call("hub", {"name": "system.ping", "pad": padding})
    assert "now" in reply


def test_wrong_path_is_html_404(local_server):
    response = requests.post(f"{local_server.url}/api/conat/nothing", json={})
    assert response.status_code == 404
    assert "<html>" in response.text.lower()
    response = requests.get(f"{local_server.url}/")
    assert response.status_code == 404


def test_empty_json_body_reads_as_no_parameters(local_server):
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {local_server.api_key}",
    }
    hub = post(local_server, "hub", b"", headers)
    assert hub.status_code == 200
    assert hub.json() == {"error": SPLIT_ERROR}
    project = post(local_server, "project", b"", headers)
    assert project.json() == {
        "error": "must specify project_id or use project-specific api key"
    }


def test_missing_content_type_drops_every_field(local_server):
    body = json.dumps({"name": "system.ping", "project_id": local_server.project_id})
    headers = {
        "Authorization": f"Bearer {local_server.api_key}",
        "Content-Type": "text/plain",
    }
    assert post(local_server, "hub", body, headers).json() == {"error": SPLIT_ERROR}
    reply = post(local_server, "project", body, headers).json()
    assert reply == {"error": "must specify project_id or use project-specific api key"}


def test_get_request_is_answered_without_parameters(local_server):
    headers = {"Authorization": f"Bearer {local_server.api_key}"}
    response = post(local_server, "hub", None, headers, method="GET")
    assert response.status_code == 200
    assert response.json() == {"error": SPLIT_ERROR}
    response = post(local_server, "hub", None, {}, method="GET")
    assert response.json() == {"error": NO_KEY}


@pytest.mark.parametrize("endpoint", ["hub", "project"])
def test_missing_authorization_header(local_server, endpoint):
    body = {"name": "system.ping", "project_id": local_server.project_id}
    assert raw_call(local_server.url, None, endpoint, body) == {"error": NO_KEY}


@pytest.mark.parametrize("scheme", ["bearer", "Token", "basic"])
def test_unknown_scheme_is_quoted_back(local_server, scheme):
    response = requests.post(
        f"{local_server.url}/api/conat/hub",
        json={"name": "system.ping"},
        headers={"Authorization": f"{scheme} {local_server.api_key}"},
    )
    assert response.json() == {"error": f"Unknown authorization type '{scheme}'"}


def test_basic_and_bearer_both_work(local_server):
    for scheme in ("Bearer", "Basic"):
        reply = raw_call(
            local_server.url,
            local_server.api_key,
            "hub",
            {"name": "system.test"},
            scheme=scheme,
        )
        assert reply["account_id"] == local_server.account_id


def test_basic_password_is_ignored_and_spaces_are_harmless(local_server):
    token = base64.b64encode(f"{local_server.api_key}:anything".encode()).decode()
    response = requests.post(
        f"{local_server.url}/api/conat/hub",
        json={"name": "system.test"},
        headers={"Authorization": f"Basic    {token}"},
    )
    assert response.json()["account_id"] == local_server.account_id


def test_invalid_key_strings_per_endpoint(local_server):
    fake = "sk-" + "A" * 16 + "000001"
    assert raw_call(local_server.url, fake, "hub", {"name": "system.ping"}) == {
        "error": HUB_INVALID
    }
    body = {"name": "system.ping", "project_id": local_server.project_id}
    assert raw_call(local_server.url, fake, "project", body) == {
        "error": PROJECT_INVALID
    }
    assert raw_call(local_server.url, "garbage", "project", body) == {
        "error": PROJECT_INVALID
    }


def test_key_with_one_changed_character_is_rejected(local_server):
    key = local_server.api_key
    changed = key[:5] + ("a" if key[5] != "a" else "b") + key[6:]
    assert raw_call(local_server.url, changed, "hub", {"name": "system.ping"}) == {
        "error": HUB_INVALID
    }


def test_project_id_rules_for_account_keys(local_server):
    call = local_server.call
    assert call("project", {"name": "system.ping"}) == {
        "error": "must specify project_id or use project-specific api key"
    }
    assert call("project", {"name": "system.ping", "project_id": None}) == {
        "error": "must specify project_id or use project-specific api key"
    }
    assert call("project", {"name": "system.ping", "project_id": "not-a-uuid"}) == {
        "error": "invalid account_id or project_id -- all must be valid uuid's"
    }
    stranger = str(uuid.uuid4())
    assert call("project", {"name": "system.ping", "project_id": stranger}) == {
        "error": "user must be a collaborator on the project"
    }


def test_project_key_scope(local_server):
    created = local_server.hub(
        "system.manageApiKeys",
        {"action": "create", "project_id": local_server.project_id, "name": "scoped"},
    )
    key = created[0]["secret"]
    url = local_server.url

    # The key's own project is used when project_id is left out.
    reply = raw_call(url, key, "project", {"name": "system.test"})
    assert reply["project_id"] == local_server.project_id

    other = str(uuid.uuid4())
    assert raw_call(
        url, key, "project", {"name": "system.ping", "project_id": other}
    ) == {"error": "project specific api key must match requested project"}
    assert raw_call(url, key, "hub", {"name": "system.ping"}) == {"error": HUB_INVALID}

    # With no parameters, a project key reaches the method dispatch.
    response = requests.post(
        f"{url}/api/conat/project", headers={"Authorization": authorization(key)}
    )
    assert response.json() == {"error": SPLIT_ERROR}


def test_unknown_function_and_ping(local_server):
    assert local_server.project("foo.bar") == {
        "error": "Error: unknown function 'foo.bar'"
    }
    assert local_server.hub("foo.bar") == {"error": "Error: unknown function 'foo.bar'"}
    assert local_server.project("ping") == "pong"


def test_not_implemented_methods_are_named(local_server):
    reply = local_server.hub("purchases.getBalance")
    assert reply == {
        "error": "Error: 'purchases.getBalance' is not implemented by the local "
        "cocalc-magics server"
    }
    reply = local_server.project("editor.jupyterNbconvert", {"args": []})
    assert "'editor.jupyterNbconvert' is not implemented" in reply["error"]


@pytest.mark.parametrize(
    "args, fragment",
    [({}, "Spread syntax"), (None, "object null is not iterable"), (5, "TypeError")],
)
def test_args_that_are_not_a_list(local_server, args, fragment):
    body = {"name": "system.ping", "args": args, "project_id": local_server.project_id}
    reply = local_server.call("project", body)
    assert is_error(reply)
    assert reply["error"].startswith("TypeError")
    assert fragment in reply["error"]


def test_name_that_is_not_a_string(local_server):
    reply = local_server.call("hub", {"name": 5})
    assert reply == {"error": "TypeError: name.split is not a function"}


def test_system_test_adds_project_id(local_server):
    reply = local_server.project("system.test")
    assert reply["project_id"] == local_server.project_id
    assert abs(reply["server_time"] - time.time() * 1000) < 60_000


def test_ping_and_version_shapes(local_server):
    assert isinstance(local_server.project("system.ping")["now"], int)
    assert isinstance(local_server.hub("system.ping")["now"], int)
    assert isinstance(local_server.project("system.version"), int)


@pytest.mark.parametrize("value", [0, -5])
def test_timeout_must_be_positive(local_server, value):
    reply = local_server.project("system.ping", timeout_ms=value)
    assert reply["error"].startswith("timeout must be positive")
    reply = local_server.hub("system.ping", timeout_ms=value)
    assert reply["error"].startswith("timeout must be positive")


def test_bridge_timeout_does_not_cancel_work(local_server):
    marker = f"late-{uuid.uuid4().hex}.txt"
    started = time.monotonic()
    reply = local_server.project(
        "system.exec",
        {"command": f"sleep 1.5; echo done > {marker}", "timeout": 30},
        timeout_ms=300,
    )
    assert time.monotonic() - started < 1.4
    assert reply == {
        "error": f"timeout - callHub: subject='project.{local_server.project_id}.0.api.-', "
        "name='system.exec', code='408' "
    }
    home = local_server.data_dir / "projects" / local_server.project_id
    wait_until(lambda: (home / marker).exists(), timeout=10)
    assert (home / marker).read_text() == "done\n"


def test_hub_timeout_uses_hub_subject(local_server):
    reply = local_server.hub(
        "projects.start", {"project_id": local_server.project_id}, timeout_ms=100000
    )
    assert reply is None
    state = local_server.hub("projects.state", {"project_id": local_server.project_id})
    assert state["state"] == "running"


def test_compute_server_without_listener_is_503(local_server):
    body = {
        "name": "system.ping",
        "project_id": local_server.project_id,
        "compute_server_id": 3,
    }
    reply = local_server.call("project", body)
    subject = f"project.{local_server.project_id}.3.api.-"
    assert reply == {
        "error": f"request -- no subscribers matching '{subject}' - callHub: "
        f"subject='{subject}', name='system.ping', code='503' "
    }


def test_success_values_are_unwrapped(local_server):
    assert (
        local_server.project(
            "system.writeTextFileToProject", {"path": "unwrap.txt", "content": "x"}
        )
        is None
    )
    assert (
        local_server.project("system.readTextFileFromProject", {"path": "unwrap.txt"})
        == "x"
    )


def test_json_content_type_with_charset(local_server):
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Authorization": f"Bearer {local_server.api_key}",
    }
    response = post(local_server, "hub", json.dumps({"name": "system.ping"}), headers)
    assert "now" in response.json()


def test_replies_are_utf8_json(local_server):
    text = "naïve café 🚀"
    local_server.project(
        "system.writeTextFileToProject", {"path": "utf8.txt", "content": text}
    )
    response = requests.post(
        f"{local_server.url}/api/conat/project",
        json={
            "name": "system.readTextFileFromProject",
            "project_id": local_server.project_id,
            "args": [{"path": "utf8.txt"}],
        },
        headers={"Authorization": f"Bearer {local_server.api_key}"},
    )
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.content.decode("utf-8") == json.dumps(text, ensure_ascii=False)
