"""CoCalc's official Python client ``cocalc-api``, unchanged, against the server."""

from __future__ import annotations

import uuid

import pytest

from tests.support.local_server import wait_until

cocalc_api = pytest.importorskip("cocalc_api")


@pytest.fixture(scope="module")
def hub(local_server):
    return cocalc_api.Hub(api_key=local_server.api_key, host=local_server.url)


@pytest.fixture(scope="module")
def project(local_server):
    return cocalc_api.Project(
        api_key=local_server.api_key,
        host=local_server.url,
        project_id=local_server.project_id,
    )


def test_hub_system(hub, local_server):
    assert isinstance(hub.system.ping()["now"], int)
    assert hub.system.test()["account_id"] == local_server.account_id
    names = hub.system.get_names([local_server.account_id])
    assert names[local_server.account_id]["first_name"] == "Local"


def test_project_system(project, local_server):
    assert isinstance(project.system.ping()["now"], int)
    assert project.system.test()["project_id"] == local_server.project_id


def test_project_exec(project):
    result = project.system.exec(command="echo 'hello from cocalc'")
    assert result == {
        "type": "blocking",
        "stdout": "hello from cocalc\n",
        "stderr": "",
        "exit_code": 0,
    }
    result = project.system.exec(
        command="python3", args=["-c", "print(6*7)"], timeout=10
    )
    assert result["stdout"] == "42\n"
    with pytest.raises(RuntimeError, match="exited with nonzero code 3"):
        project.system.exec(command="exit 3")


def test_project_exec_async(project):
    started = project.system.exec(command="sleep 0.3; echo done", async_call=True)
    assert started["type"] == "async"
    final = project.call(
        "system.exec",
        [{"async_get": started["job_id"], "async_await": True}],
        timeout=10000,
    )
    assert final["stdout"] == "done\n"


def test_project_key_without_project_id(hub, local_server):
    created = hub.call(
        "system.manageApiKeys",
        [{"action": "create", "project_id": local_server.project_id}],
    )
    key = created[0]["secret"]
    scoped = cocalc_api.Project(api_key=key, host=local_server.url)
    assert scoped.system.test()["project_id"] == local_server.project_id
    with pytest.raises(RuntimeError, match="must be signed in"):
        cocalc_api.Hub(api_key=key, host=local_server.url).system.ping()


def test_hub_projects(hub, local_server):
    project_id = hub.projects.create_project(title="from cocalc-api", description="d")
    uuid.UUID(project_id)
    assert hub.projects.start(project_id) is None
    assert hub.projects.state(project_id)["state"] == "running"
    assert "start_ts" in hub.projects.status(project_id)
    assert hub.projects.touch(project_id) is None
    listed = hub.projects.get(all=True, project_id=project_id)
    assert listed[0]["title"] == "from cocalc-api"
    assert listed[0]["state"]["state"] == "running"
    assert hub.projects.add_collaborator(project_id, local_server.account_id) == {
        "project_id": [project_id]
    }
    assert hub.projects.stop(project_id) is None
    assert hub.projects.state(project_id)["state"] == "opened"
    assert hub.projects.get(all=True, state="opened", project_id=project_id)
    assert hub.projects.delete(project_id) is None


def test_db_query(hub, local_server):
    reply = hub.db.query(
        {"projects_all": [{"project_id": local_server.project_id, "title": None}]}
    )
    assert reply == {
        "projects_all": [
            {"project_id": local_server.project_id, "title": "Local project"}
        ]
    }


def test_errors_become_runtime_errors(hub, project):
    with pytest.raises(RuntimeError, match="unknown function"):
        hub.call("foo.bar", [])
    with pytest.raises(RuntimeError, match="does not exist"):
        project.call("system.exec", [{"async_get": "missing"}])
    with pytest.raises(
        RuntimeError, match="not implemented by the local cocalc-magics"
    ):
        hub.call("purchases.getBalance", [])


def test_jupyter_methods(hub, project, local_server):
    try:
        import cocalc_magics.server.jupyter  # noqa: F401
    except ImportError:
        pytest.skip("the Jupyter service is not available")
    specs = hub.jupyter.kernels(project_id=local_server.project_id)
    assert "python3" in [spec["name"] for spec in specs]
    assert project.system.list_jupyter_kernels() is not None
    result = project.system.jupyter_execute(input="2 + 3", kernel="python3")
    assert result == [{"data": {"text/plain": "5"}}]
    # The pool keeps spare kernels started in the background after the call.
    kernels = wait_until(project.system.list_jupyter_kernels, timeout=30)
    assert all(kernel["kernel_name"] == "python3" for kernel in kernels)
    # Kernel processes count in the project's status.
    status = hub.projects.status(local_server.project_id)
    assert status["processes"]["count"] >= len(kernels)
    assert status["memory"]["rss"] > 5_000
    for kernel in kernels:
        assert project.system.stop_jupyter_kernel(pid=kernel["pid"]) == {
            "success": True
        }
    assert project.system.stop_jupyter_kernel(pid=1) == {"success": False}
