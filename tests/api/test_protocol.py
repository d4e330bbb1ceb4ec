"""Exact request bodies, headers, URLs and units of every helper."""

from __future__ import annotations

import json

import pytest

from cocalc_magics.api import (
    AsyncJob,
    AuthenticationError,
    Connection,
    ExecResult,
    HTTPStatusError,
    JobNotFoundError,
    ProjectState,
    RequestTooLargeError,
)
from tests.support.fake_server import ACCOUNT_ID, PROJECT_ID, FakeCoCalc, Reply

OTHER_PROJECT = "99999999-8888-7777-6666-555555555555"
JOB = "0b9f0e3c-1111-2222-3333-444444444444"


def only_request(fake: FakeCoCalc):
    assert len(fake.requests) == 1, [r.json for r in fake.requests]
    return fake.requests[0]


def test_project_call_headers_and_url(fake, connection):
    connection.ping()
    request = only_request(fake)
    assert request.method == "POST"
    assert request.path == "/api/conat/project"
    assert request.header("Authorization") == f"Bearer {fake.api_key}"
    assert request.header("Content-Type") == "application/json"
    assert request.header("User-Agent").startswith("cocalc-magics/")
    assert request.json == {
        "name": "system.ping",
        "args": [],
        "timeout": 15000,
        "project_id": PROJECT_ID,
        "compute_server_id": 0,
    }


def test_hub_call_body_has_no_project_fields(fake, connection):
    connection.hub_ping()
    request = only_request(fake)
    assert request.path == "/api/conat/hub"
    assert request.json == {"name": "system.ping", "args": [], "timeout": 15000}


def test_base_path_is_kept(tmp_path):
    with FakeCoCalc(base_path="/cocalc") as fake:
        with Connection(host=fake.url + "/", api_key=fake.api_key) as conn:
            conn.hub_ping()
            conn.ping(project_id=PROJECT_ID)
        assert [r.path for r in fake.requests] == [
            "/cocalc/api/conat/hub",
            "/cocalc/api/conat/project",
        ]


def test_project_id_left_out_when_unknown(fake):
    with Connection(host=fake.url, api_key=fake.api_key) as conn:
        describe = conn.describe_request("project", "system.ping", [])
        assert "project_id" not in describe["json"]
        with pytest.raises(Exception) as caught:
            conn.ping()
    assert "project_id" not in only_request(fake).json
    assert "COCALC_PROJECT_ID" in caught.value.hint


def test_explicit_project_and_compute_server(fake, connection):
    fake.projects.add(OTHER_PROJECT)
    result = connection.ping(project_id=OTHER_PROJECT.upper(), compute_server_id=3)
    body = only_request(fake).json
    assert body["project_id"] == OTHER_PROJECT
    assert body["compute_server_id"] == 3
    assert result.project_id == OTHER_PROJECT


@pytest.mark.parametrize("bad", [None, "1", 1.5, True, -1])
def test_compute_server_id_must_be_integer(fake, connection, bad):
    with pytest.raises((TypeError, ValueError)):
        connection.ping(compute_server_id=bad)
    assert fake.requests == []


def test_exec_body_and_units(fake, connection):
    fake.script(
        "system.exec",
        {"type": "blocking", "stdout": "42\n", "stderr": "", "exit_code": 0},
    )
    result = connection.exec(
        "python3",
        ["-c", "print(6*7)"],
        timeout=30,
        max_output=100000,
        env={"A": "b c"},
        cwd="/tmp",
    )
    body = only_request(fake).json
    assert body["name"] == "system.exec"
    assert body["args"] == [
        {
            "command": "python3",
            "args": ["-c", "print(6*7)"],
            "cwd": "/tmp",
            "env": {"A": "b c"},
            "timeout": 30,
            "max_output": 100000,
            "err_on_exit": False,
        }
    ]
    assert body["timeout"] == 35000
    assert isinstance(result, ExecResult)
    assert result.stdout == "42\n"
    assert result.ok
    assert result.command == "python3 -c 'print(6*7)'"


def test_exec_defaults(fake, connection):
    connection.exec("date")
    options = only_request(fake).json["args"][0]
    assert options == {
        "command": "date",
        "timeout": 60.0,
        "max_output": 1048576,
        "err_on_exit": False,
    }
    assert only_request(fake).json["timeout"] == 65000


@pytest.mark.parametrize(
    ("seconds", "bridge_ms"), [(10, 15000), (1800, 1805000), (0.5, 5500)]
)
def test_exec_timeout_seconds_and_bridge_milliseconds(
    fake, connection, seconds, bridge_ms
):
    connection.exec("sleep 5", timeout=seconds)
    body = only_request(fake).json
    assert body["args"][0]["timeout"] == seconds
    assert body["timeout"] == bridge_ms


def test_read_timeout_exceeds_bridge_timeout(connection):
    request = connection.describe_request(
        "project", "system.exec", [{"command": "x"}], timeout_ms=35000
    )
    assert request["timeout_s"]["read"] == 35 + 150
    assert request["timeout_s"]["connect"] == 5.0
    hub = connection.describe_request("hub", "projects.start", [], timeout_ms=60000)
    assert hub["timeout_s"]["read"] > 60


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "10", True])
def test_exec_rejects_bad_timeout(fake, connection, bad):
    with pytest.raises((TypeError, ValueError)):
        connection.exec("date", timeout=bad)
    assert fake.requests == []


def test_exec_bash_path_and_script(fake, connection):
    connection.exec("ls -la | wc -l", bash=True, path="notes/Week 1")
    options = only_request(fake).json["args"][0]
    assert options["bash"] is True
    assert options["path"] == "notes/Week 1"
    assert "args" not in options


def test_exec_non_ascii_round_trip(fake, connection):
    text = 'echo "Grüße, 你好, Ωμέγα, 🚀"'
    fake.script(
        "system.exec",
        {
            "type": "blocking",
            "stdout": "Grüße, 你好, Ωμέγα, 🚀 \ufffd\n",
            "stderr": "",
            "exit_code": 0,
        },
    )
    result = connection.exec(text, cwd="/home/user/Données")
    request = only_request(fake)
    assert request.json["args"][0]["command"] == text
    assert request.json["args"][0]["cwd"] == "/home/user/Données"
    assert "Grüße".encode() in request.body
    json.loads(request.body.decode("utf-8"))
    assert result.stdout == "Grüße, 你好, Ωμέγα, 🚀 \ufffd\n"


def test_exec_nonzero_exit_keeps_output(fake, connection):
    fake.script(
        "system.exec",
        {
            "type": "blocking",
            "stdout": "after\n",
            "stderr": "grep: x\n",
            "exit_code": 2,
        },
    )
    result = connection.exec("grep -q needle haystack.txt; echo after; exit 2")
    assert result.exit_code == 2
    assert not result.ok
    assert result.stdout == "after\n"
    assert result.stderr == "grep: x\n"


def test_exec_truncation_suffix_is_recorded(fake, connection):
    fake.script(
        "system.exec",
        {
            "type": "blocking",
            "stdout": "aaaaa (truncated at 5 characters)",
            "stderr": "e",
            "exit_code": 0,
        },
    )
    result = connection.exec("yes a", max_output=5)
    assert result.stdout == "aaaaa"
    assert result.stdout_truncated
    assert not result.stderr_truncated
    assert "truncated" in repr(result)


def test_exec_async_start(fake, connection):
    fake.script(
        "system.exec",
        {
            "type": "async",
            "job_id": JOB,
            "status": "running",
            "start": 1767259800000,
            "pid": 4242,
            "stdout": "",
            "stderr": "",
            "exit_code": 0,
        },
    )
    job = connection.exec_async(
        "for i in 1 2 3; do echo $i; sleep 1; done", timeout=600
    )
    body = only_request(fake).json
    assert body["args"] == [
        {
            "command": "for i in 1 2 3; do echo $i; sleep 1; done",
            "timeout": 600,
            "err_on_exit": False,
            "async_call": True,
        }
    ]
    assert body["timeout"] == 20000
    assert isinstance(job, AsyncJob)
    assert job.job_id == JOB
    assert job.running
    assert job.exit_code is None
    assert job.pid == 4242
    assert job.start_ms == 1767259800000


def test_exec_async_allows_no_time_limit(fake, connection):
    fake.script("system.exec", {"type": "async", "job_id": JOB, "status": "running"})
    connection.exec_async("train", timeout=0, max_output=2000)
    options = only_request(fake).json["args"][0]
    assert options["timeout"] == 0
    assert options["max_output"] == 2000


def test_async_get_poll_and_stats(fake, connection):
    fake.script(
        "system.exec",
        {
            "type": "async",
            "job_id": JOB,
            "status": "completed",
            "pid": 4242,
            "elapsed_s": 3.021,
            "stdout": "1\n2\n3\n",
            "stderr": "",
            "exit_code": 0,
            "stats": [
                {
                    "timestamp": 1767259801010,
                    "mem_rss": 3.4,
                    "cpu_pct": 0.5,
                    "cpu_secs": 0.01,
                }
            ],
        },
    )
    job = connection.async_get(JOB, stats=True)
    body = only_request(fake).json
    assert body["args"] == [{"async_get": JOB, "async_stats": True}]
    assert body["timeout"] == 15000
    assert job.status == "completed"
    assert job.exit_code == 0
    assert job.elapsed_s == 3.021
    assert job.stats[0].mem_rss_mib == 3.4
    assert job.stats[0].timestamp_ms == 1767259801010
    assert job.stats[0].cpu_secs == 0.01


def test_async_get_wait_sends_await_with_bridge_timeout(fake, connection):
    fake.script(
        "system.exec",
        {"type": "async", "job_id": JOB, "status": "completed", "exit_code": 3},
    )
    job = connection.async_get(JOB, wait=True, wait_timeout=45)
    body = only_request(fake).json
    assert body["args"] == [{"async_get": JOB, "async_await": True}]
    assert body["timeout"] == 45000
    assert job.exit_code == 3


def test_await_408_falls_back_to_poll(fake, connection):
    timeout = (
        f"timeout - callHub: subject='project.{PROJECT_ID}.0.api.-', "
        "name='system.exec', code='408' "
    )
    running = {"type": "async", "job_id": JOB, "status": "running", "stdout": "1\n"}

    def answer(request):
        if request.args[0].get("async_await"):
            return Reply.error(timeout)
        return running

    fake.on("system.exec", answer)
    job = connection.async_get(JOB, wait=True, wait_timeout=1)
    bodies = [r.json["args"][0] for r in fake.requests]
    assert bodies == [{"async_get": JOB, "async_await": True}, {"async_get": JOB}]
    assert job.running
    assert job.stdout == "1\n"


def test_async_get_unknown_job(fake, connection):
    fake.script(
        "system.exec", Reply.error(f"Error: Async operation '{JOB}' does not exist.")
    )
    with pytest.raises(JobNotFoundError) as caught:
        connection.async_get(JOB)
    assert caught.value.job_id == JOB
    assert caught.value.message == f"Async operation '{JOB}' does not exist."
    assert "one hour" in caught.value.hint


def test_async_get_failure_names_job(fake, connection):
    fake.script("system.exec", Reply.html(502, "<h1>Bad Gateway</h1>"))
    with pytest.raises(HTTPStatusError) as caught:
        connection.async_get(JOB)
    assert caught.value.job_id == JOB
    assert f"async_get('{JOB}')" in caught.value.hint


def test_signal_negates_pid_for_group(fake, connection):
    fake.script("system.signal", Reply.json(None))
    assert connection.signal(4242, 9) is None
    assert connection.signal(4242, group=False) is None
    bodies = [r.json["args"] for r in fake.requests]
    assert bodies == [[{"signal": 9, "pid": -4242}], [{"signal": 15, "pid": 4242}]]


def test_jupyter_execute_body(fake, connection):
    fake.script("system.jupyterExecute", [{"data": {"text/plain": "5050"}}])
    result = connection.jupyter_execute(
        "sum(range(a + 1))",
        history=["a = 100"],
        path="work",
        limits={"timeout_ms_per_cell": 20000},
    )
    body = only_request(fake).json
    assert body["name"] == "system.jupyterExecute"
    assert body["args"] == [
        {
            "kernel": "python3",
            "input": "sum(range(a + 1))",
            "history": ["a = 100"],
            "path": "work",
            "limits": {"timeout_ms_per_cell": 20000},
        }
    ]
    assert body["timeout"] == 90000
    assert result.outputs == [
        {"output_type": "display_data", "data": {"text/plain": "5050"}, "metadata": {}}
    ]


def test_kernel_helpers(fake, connection):
    fake.script(
        "system.listJupyterKernels",
        [{"pid": 5120, "connectionFile": "/tmp/k.json", "kernel_name": "python3"}],
    )
    fake.script("system.stopJupyterKernel", {"success": True})
    fake.script(
        "editor.jupyterKernels",
        [
            {
                "name": "python3",
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
            },
            {
                "name": "old",
                "display_name": "Old",
                "metadata": {"cocalc": {"disabled": True}},
            },
        ],
    )
    running = connection.running_kernels()
    assert connection.stop_kernel(5120) is True
    specs = connection.kernel_specs()

    assert [r.json["args"] for r in fake.requests] == [[], [{"pid": 5120}], []]
    assert running[0].pid == 5120
    assert running[0].connection_file == "/tmp/k.json"
    assert [spec.name for spec in specs] == ["python3", "old"]
    assert specs[0].display_name == "Python 3 (ipykernel)"
    assert specs[1].disabled


def test_file_helpers(fake, connection):
    fake.script(
        "system.listing",
        [
            {"name": "a.ipynb", "size": 1234, "mtime": 1767259000.5},
            {"name": "data", "isdir": True, "size": 5, "mtime": 1767250000},
        ],
    )
    fake.script("system.readTextFileFromProject", "hello\n")
    fake.script("system.writeTextFileToProject", Reply.json(None))

    entries = connection.listing("work", hidden=True)
    text = connection.read_text_file("a.txt")
    connection.write_text_file("dir/b.txt", "naïve\n")

    assert [r.json["args"] for r in fake.requests] == [
        [{"path": "work", "hidden": True}],
        [{"path": "a.txt"}],
        [{"path": "dir/b.txt", "content": "naïve\n"}],
    ]
    assert entries[1].is_dir
    assert entries[0].mtime_s == 1767259000.5
    assert text == "hello\n"


def test_large_body_rejected_before_sending(fake, connection):
    with pytest.raises(RequestTooLargeError) as caught:
        connection.write_text_file("big.txt", "x" * (1024 * 1024))
    assert fake.requests == []
    assert "1048576 bytes" in caught.value.message
    assert caught.value.status is None


def test_body_just_under_limit_is_sent(fake, connection):
    fake.script("system.writeTextFileToProject", Reply.json(None))
    connection.write_text_file("big.txt", "x" * (1024 * 1024 - 300))
    assert len(fake.requests) == 1


def test_key_scope_account(fake, connection):
    scope = connection.test()
    assert scope.kind == "account"
    assert scope.account_id == ACCOUNT_ID
    assert [r.path for r in fake.requests] == ["/api/conat/hub"]


def test_key_scope_project_key(fake):
    project_key = "sk-PROJECTKEY-987654321"
    fake.project_keys[project_key] = PROJECT_ID
    with Connection(
        host=fake.url, api_key=project_key, project_id=OTHER_PROJECT
    ) as conn:
        scope = conn.test()
    assert scope.kind == "project"
    assert scope.project_id == PROJECT_ID
    second = fake.requests[1]
    assert second.path == "/api/conat/project"
    assert second.json == {
        "name": "system.test",
        "args": [],
        "timeout": 15000,
        "compute_server_id": 0,
    }


def test_key_scope_invalid_key(fake):
    with Connection(host=fake.url, api_key="sk-WRONGKEY-1234567890") as conn:
        with pytest.raises(AuthenticationError) as caught:
            conn.test()
    assert caught.value.message == "must sign in as project or account"
    assert [r.path for r in fake.requests] == ["/api/conat/hub", "/api/conat/project"]


def test_hub_project_helpers(fake, connection):
    new_project = "5f0d2a8e-0000-4000-8000-000000000000"
    fake.script("projects.createProject", new_project)
    for name in (
        "projects.start",
        "projects.stop",
        "projects.setQuotas",
        "projects.removeCollaborator",
    ):
        fake.script(name, Reply.json(None))
    fake.script("projects.addCollaborator", {"project_id": [PROJECT_ID]})
    fake.script(
        "projects.status",
        {
            "memory": {"rss": 524288, "limit": 1048576},
            "disk_MB": 412,
            "cpu": {"usage": 12.5},
        },
    )

    assert connection.create_project("Lab 3", start=True) == new_project
    connection.start_project()
    connection.stop_project()
    connection.set_quotas(memory=2000, cores=2)
    connection.add_collaborator(ACCOUNT_ID.upper())
    connection.remove_collaborator(ACCOUNT_ID)
    status = connection.project_status()

    sent = [(r.json["name"], r.json["args"], r.json["timeout"]) for r in fake.requests]
    assert sent == [
        ("projects.createProject", [{"title": "Lab 3", "start": True}], 15000),
        ("projects.start", [{"project_id": PROJECT_ID}], 60000),
        ("projects.stop", [{"project_id": PROJECT_ID}], 90000),
        (
            "projects.setQuotas",
            [{"project_id": PROJECT_ID, "memory": 2000, "cores": 2}],
            15000,
        ),
        (
            "projects.addCollaborator",
            [{"opts": {"project_id": PROJECT_ID, "account_id": ACCOUNT_ID}}],
            15000,
        ),
        (
            "projects.removeCollaborator",
            [{"opts": {"project_id": PROJECT_ID, "account_id": ACCOUNT_ID}}],
            15000,
        ),
        ("projects.status", [{"project_id": PROJECT_ID}], 15000),
    ]
    assert all(r.path == "/api/conat/hub" for r in fake.requests)
    assert status.memory_rss_mib == 512.0
    assert status.memory_limit_mib == 1024.0
    assert status.disk_mb == 412
    assert status.cpu_usage_s == 12.5


def test_set_quotas_rejects_unknown_names(fake, connection):
    with pytest.raises(TypeError, match="memroy"):
        connection.set_quotas(memroy=2000)
    assert fake.requests == []


def test_project_state_with_error_field_is_a_result(fake, connection):
    fake.script(
        "projects.state",
        {"state": "opened", "time": "2026-07-01T09:30:00.000Z", "error": ""},
    )
    state = connection.project_state()
    assert isinstance(state, ProjectState)
    assert state.state == "opened"
    assert state.error == ""
    assert not state.running


def test_project_state_error_text_is_not_raised(fake, connection):
    fake.script("projects.state", {"state": "opened", "error": "out of memory"})
    assert connection.project_state().error == "out of memory"


def test_project_state_empty_object(fake, connection):
    fake.script("projects.state", {})
    assert connection.project_state().state is None


def test_quotas_and_projects_queries(fake, connection):
    fake.script(
        "db.userQuery",
        {
            "projects_all": [
                {
                    "project_id": PROJECT_ID,
                    "title": "Course 2026",
                    "state": {"state": "running"},
                    "settings": {
                        "cores": 1,
                        "memory": "1000",
                        "disk_quota": 3000,
                        "mintime": "1800.5",
                    },
                    "run_quota": {
                        "memory_limit": 2000,
                        "cpu_limit": 1,
                        "idle_timeout": 3600,
                    },
                    "site_license": {},
                }
            ]
        },
    )
    quotas = connection.project_quotas()
    query = only_request(fake).json["args"][0]
    assert query == {
        "query": {
            "projects_all": [
                {
                    "project_id": PROJECT_ID,
                    "title": None,
                    "state": None,
                    "settings": None,
                    "run_quota": None,
                    "site_license": None,
                }
            ]
        }
    }
    assert quotas.settings["memory"] == 1000
    assert quotas.settings["mintime"] == 1800.5
    assert quotas.run_quota["memory_limit"] == 2000
    assert quotas.state == "running"

    fake.requests.clear()
    assert [p.title for p in connection.projects(title="course")] == ["Course 2026"]
    assert connection.projects(title="physics") == []
    template = fake.requests[0].json["args"][0]["query"]["projects_all"][0]
    assert template["project_id"] is None
    assert template["title"] is None


def test_generic_calls_pass_through(fake, connection):
    fake.script("purchases.getBalance", 12.37)
    fake.script("system.version", 1767000000)
    assert connection.hub_call("purchases.getBalance") == 12.37
    assert connection.project_call("system.version", timeout_ms=1000.2) == 1767000000
    assert fake.requests[1].json["timeout"] == 1001


@pytest.mark.parametrize("value", [None, [], "pid", 0, False])
def test_generic_call_returns_any_json_value(fake, connection, value):
    fake.script("x.y", Reply.json(value))
    assert connection.hub_call("x.y") == value


@pytest.mark.parametrize("args", [{"a": 1}, "text", 5])
def test_args_must_be_a_list(fake, connection, args):
    with pytest.raises(TypeError, match="args must be a list"):
        connection.hub_call("x.y", args)
    assert fake.requests == []


@pytest.mark.parametrize("timeout_ms", [0, -5, float("nan"), "15000"])
def test_bridge_timeout_must_be_positive(fake, connection, timeout_ms):
    with pytest.raises((TypeError, ValueError)):
        connection.hub_call("system.ping", timeout_ms=timeout_ms)
    assert fake.requests == []
