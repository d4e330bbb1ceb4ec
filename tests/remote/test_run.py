"""run_remote_cell through the real client against a scripted loopback CoCalc.

The fake server replies to ``system.jupyterExecute`` from a handler and records each
request body, so these tests check what goes over the wire (history, path,
limits) and what the user sees.
"""

from __future__ import annotations

import base64
import os

import pytest
from IPython.utils.capture import capture_output
from tests.remote.remote_samples import MIXED_ITEMS

from cocalc_magics.api import CoCalcError, Connection
from cocalc_magics.remote import (
    RemoteKernelError,
    SessionStore,
    find_sessions,
    last_result,
    reset_sessions,
    run_remote_cell,
)
from tests.support.fake_server import FakeCoCalc, Reply


def reply_for(request):
    """Return the items a kernel would send for a few known inputs."""
    code = request.args[0]["input"]
    if code == "mixed":
        return MIXED_ITEMS
    if code.startswith("raise"):
        return [
            {"ename": "ValueError", "evalue": "bad", "traceback": ["ValueError: bad"]}
        ]
    if code == "big":
        payload = base64.b64encode(os.urandom(7_500_000)).decode("ascii")
        return [
            {"data": {"image/png": payload, "text/plain": "<Figure>"}},
            {"name": "stdout", "text": "done\n"},
        ]
    return [{"name": "stdout", "text": f"ran {code}\n"}]


@pytest.fixture
def fake():
    with FakeCoCalc() as server:
        server.on("system.jupyterExecute", reply_for)
        yield server


@pytest.fixture
def connection(fake):
    with Connection(
        host=fake.url, api_key=fake.api_key, project_id=fake.project_id
    ) as conn:
        yield conn


@pytest.fixture
def store():
    return SessionStore()


def sent_options(fake) -> list[dict]:
    return [request.args[0] for request in fake.requests_for("system.jupyterExecute")]


def run(connection, code, store, **options):
    with capture_output() as captured:
        result = run_remote_cell(connection, code, sessions=store, **options)
    return result, captured


def test_call_without_session_sends_no_history(shell, connection, fake, store):
    run(connection, "a = 1", store)
    _, captured = run(connection, "b = 2", store)

    options = sent_options(fake)
    assert [option["input"] for option in options] == ["a = 1", "b = 2"]
    assert all("history" not in option for option in options)
    assert all(option["kernel"] == "python3" for option in options)
    assert captured.stdout == "ran b = 2\n"
    assert len(store) == 0


def test_session_replays_successful_inputs(shell, connection, fake, store):
    run(connection, "a = 1", store, session="work")
    with pytest.raises(RemoteKernelError):
        run(connection, "raise ValueError", store, session="work")
    run(connection, "b = a + 1", store, session="work")
    run(connection, "print(b)", store, session="work")

    histories = [option.get("history") for option in sent_options(fake)]
    assert histories == [None, ["a = 1"], ["a = 1"], ["a = 1", "b = a + 1"]]
    session = find_sessions(connection, "work", sessions=store)[0]
    assert session.inputs == ["a = 1", "b = a + 1", "print(b)"]
    assert len(session.calls) == 4
    assert [call.ok for call in session.calls] == [True, False, True, True]


def test_path_sent_on_every_call(shell, connection, fake, store):
    run(connection, "a = 1", store, session="work", path="data/Données")
    run(connection, "b = 2", store, session="work", path="data/Données")
    assert [option["path"] for option in sent_options(fake)] == ["data/Données"] * 2


def test_sessions_separate_by_kernel_and_name(shell, connection, fake, store):
    run(connection, "a = 1", store, session="one")
    run(connection, "b = 1", store, session="two")
    run(connection, "c = 1", store, session="one", kernel="sage")
    run(connection, "d = 1", store, session="one")

    options = sent_options(fake)
    assert options[2]["kernel"] == "sage"
    assert "history" not in options[2]
    assert options[3]["history"] == ["a = 1"]
    assert len(find_sessions(connection, "one", sessions=store)) == 2
    assert len(find_sessions(connection, "one", "sage", sessions=store)) == 1


def test_sessions_separate_by_project(shell, fake, store):
    other_project = "99999999-2222-3333-4444-555555555555"
    fake.projects.add(other_project)
    with Connection(
        host=fake.url, api_key=fake.api_key, project_id=fake.project_id
    ) as first:
        run(first, "a = 1", store, session="work")
    with Connection(
        host=fake.url, api_key=fake.api_key, project_id=other_project
    ) as second:
        run(second, "b = 1", store, session="work")
    assert "history" not in sent_options(fake)[1]


def test_reset_forgets_history(shell, connection, fake, store):
    run(connection, "a = 1", store, session="work")
    assert reset_sessions(connection, "work", sessions=store) == 1
    run(connection, "b = 1", store, session="work")

    assert "history" not in sent_options(fake)[1]
    assert reset_sessions(connection, "missing", sessions=store) == 0


def test_session_description_lists_inputs(shell, connection, store):
    run(connection, "a = 1", store, session="work")
    run(connection, "import random", store, session="work")
    session = find_sessions(connection, "work", sessions=store)[0]
    text = session.describe()

    assert "Session 'work' on kernel python3" in text
    assert "2 inputs replayed on each call, 2 calls so far (0 with an error)." in text
    assert "[1] a = 1" in text
    assert "[2] import random   [draw random numbers]" in text
    assert "Replay estimate: at most about" in text
    page = session._repr_html_()
    assert "<li><code>[2] import random   [draw random numbers]</code></li>" in page


def test_side_effect_warning_on_replayed_input(shell, connection, store):
    _, quiet = run(connection, "a = 1", store, session="work")
    _, noisy = run(connection, "open('out.txt', 'w').write('x')", store, session="work")

    assert "Warning" not in quiet.stderr
    assert "seems to write or delete files" in noisy.stderr
    assert "a guess from the code's text" in noisy.stderr
    assert "%cocalc session work --reset" in noisy.stderr


def test_no_side_effect_warning_without_session(shell, connection, store):
    _, captured = run(connection, "print('x')", store)
    assert "Warning" not in captured.stderr


def test_replay_near_time_limit_warns(shell, connection, fake, store):
    fake.script(
        "system.jupyterExecute", Reply.json([{"data": {"text/plain": "1"}}], delay=0.9)
    )
    limits = {"timeout_ms_per_cell": 1000}
    _, captured = run(connection, "slow()", store, session="work", server_limits=limits)

    assert "close to the server's limit of 1 s per run" in captured.stderr
    assert fake.requests_for("system.jupyterExecute")[0].args[0]["limits"] == limits


def test_fast_replay_does_not_warn(shell, connection, store):
    _, captured = run(connection, "fast()", store, session="work")
    assert "limit" not in captured.stderr


def test_out_variable_stored_even_on_error(shell, connection, store):
    namespace = {}
    with pytest.raises(RemoteKernelError) as caught:
        run(connection, "mixed", store, out="answer", namespace=namespace)

    assert namespace["answer"] is caught.value.result
    assert namespace["answer"] is last_result()
    assert type(caught.value).__name__ == "ZeroDivisionError"
    assert namespace["answer"].stdout == "partial\n"
    assert namespace["answer"].items == MIXED_ITEMS


def test_no_raise_returns_result_with_error(shell, connection, store):
    result, captured = run(connection, "mixed", store, no_raise=True)
    assert not result.ok
    assert result.errors[0].ename == "ZeroDivisionError"
    assert "ZeroDivisionError" in captured.stderr
    assert captured.stdout == "partial\n"


def test_big_payload_over_http_is_withheld(shell, connection, store):
    namespace = {}
    result, captured = run(connection, "big", store, out="plot", namespace=namespace)
    assert captured.stdout == "done\n"
    assert all("image/png" not in output.data for output in captured.outputs)
    assert "plot.payload(0, 'image/png')" in captured.outputs[-1].data["text/plain"]
    assert len(result.payload(0, "image/png")) == 7_500_000


def test_non_ascii_input_round_trips(shell, connection, fake, store):
    code = 'print("naïve café 🚀")'
    _, captured = run(connection, code, store, session="unicode")
    assert sent_options(fake)[0]["input"] == code
    assert captured.stdout == f"ran {code}\n"


def test_call_failure_keeps_history_unchanged(shell, connection, fake, store):
    run(connection, "a = 1", store, session="work")
    spawn_error = (
        "Error: **Unable to Spawn Jupyter Kernel:** "
        'No spec available for kernel "nope".'
    )
    fake.script("system.jupyterExecute", Reply.error(spawn_error))
    with pytest.raises(CoCalcError, match="Unable to Spawn Jupyter Kernel"):
        run(connection, "b = 1", store, session="work")

    session = find_sessions(connection, "work", sessions=store)[0]
    assert session.inputs == ["a = 1"]
    assert [call.ok for call in session.calls] == [True, False]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"kernel": ""}, "Invalid kernel name ''"),
        ({"session": " "}, "Invalid session name ' '"),
        ({"out": "not a name"}, "Invalid variable name 'not a name'"),
        ({"out": "x"}, "No namespace given"),
        ({"path": 3}, "Invalid path 3"),
    ],
)
def test_invalid_arguments_rejected_before_call(
    shell, connection, fake, store, options, message
):
    with pytest.raises(ValueError, match=message):
        run_remote_cell(connection, "1", sessions=store, **options)
    assert fake.requests_for("system.jupyterExecute") == []


def test_code_must_be_text(shell, connection, fake, store):
    with pytest.raises(TypeError, match="must be a string, not bytes"):
        run_remote_cell(connection, b"1", sessions=store)
    assert fake.requests_for("system.jupyterExecute") == []
