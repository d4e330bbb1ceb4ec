"""Client-side sessions: history, replay estimate, warnings and the store."""

from __future__ import annotations

import pytest

from cocalc_magics.remote import Session, SessionKey, SessionStore, detect_side_effects

KEY = SessionKey(
    "http://127.0.0.1:1", "11111111-2222-3333-4444-555555555555", "python3", "work"
)


@pytest.mark.parametrize(
    "code, effect",
    [
        ("open('out.csv', 'w').write(text)", "write or delete files"),
        ("df.to_csv('out.csv')", "write or delete files"),
        ("plt.savefig('plot.png')", "write or delete files"),
        ("os.remove('old.txt')", "write or delete files"),
        ("import requests\nrequests.get(url)", "use the network"),
        ("from urllib.request import urlopen", "use the network"),
        ("np.random.rand(3)", "draw random numbers"),
        ("import random", "draw random numbers"),
        ("started = time.time()", "read the clock or sleep"),
        ("datetime.now()", "read the clock or sleep"),
        ("!pip install x", "run shell commands"),
        ("subprocess.run(['ls'])", "run shell commands"),
    ],
)
def test_side_effects_detected(code, effect):
    assert effect in detect_side_effects(code)


@pytest.mark.parametrize(
    "code",
    [
        "a = 1",
        "import numpy as np\nx = np.arange(10)",
        "def f(x):\n    return x * 2",
        # The server discards the output of replayed history.
        "print(total)",
        "",
    ],
)
def test_plain_code_has_no_side_effects(code):
    assert detect_side_effects(code) == []


def test_successful_inputs_join_history():
    session = Session(KEY)
    assert session.record_call("a = 1", 0.5, ok=True) == []
    assert session.record_call("a +", 0.4, ok=False) == []
    session.record_call("b = a", 0.7, ok=True)

    assert session.history == ["a = 1", "b = a"]
    assert [call.history_length for call in session.calls] == [0, 1, 1]
    assert session.replay_estimate_s == 0.7


def test_history_is_a_copy():
    session = Session(KEY)
    session.record_call("a = 1", 0.1, ok=True)
    session.history.append("changed")
    assert session.inputs == ["a = 1"]


def test_replay_estimate_follows_last_success():
    session = Session(KEY)
    assert session.replay_estimate_s is None
    session.record_call("a = 1", 2.0, ok=True)
    session.record_call("fails", 9.0, ok=False)
    assert session.replay_estimate_s == 2.0


def test_time_warning_near_limit():
    session = Session(KEY, time_limit_s=10.0)
    assert session.record_call("a = 1", 7.9, ok=True) == []
    warnings = session.record_call("b = 2", 8.0, ok=True)

    assert len(warnings) == 1
    assert "may take up to about 8.0 s" in warnings[0]
    assert "limit of 10 s per run" in warnings[0]
    assert "%cocalc session work --reset" in warnings[0]


def test_size_warning_for_large_history():
    session = Session(KEY)
    warnings = session.record_call("x = '" + "a" * 950_000 + "'", 0.1, ok=True)
    assert any("rejects request bodies over 1 MB" in warning for warning in warnings)


def test_reset_clears_everything():
    session = Session(KEY)
    session.record_call("a = 1", 3.0, ok=True)
    session.reset()
    assert session.inputs == []
    assert session.calls == []
    assert session.replay_estimate_s is None


def test_describe_marks_side_effects():
    session = Session(KEY)
    session.record_call("a = 1", 0.2, ok=True)
    session.record_call("import random\nrandom.seed(a)", 0.3, ok=True)
    text = session.describe()

    assert "2 inputs replayed on each call, 2 calls so far (0 with an error)." in text
    assert "Last call: 0.3 s with 1 input replayed first." in text
    assert "[1] a = 1" in text
    assert "[2] import random … (+1 lines)   [draw random numbers]" in text
    assert "a guess from the code's text" in text
    assert repr(session) == "<Session 'work' kernel='python3' inputs=2 calls=2>"


def test_store_keys_sessions_by_all_fields():
    store = SessionStore()
    first = store.get(KEY)
    other_kernel = store.get(KEY._replace(kernel="sage"))
    other_project = store.get(KEY._replace(project_id="other"))

    assert store.get(KEY) is first
    assert other_kernel is not first
    assert other_project is not first
    assert store.get(KEY._replace(name="missing"), create=False) is None
    assert len(store) == 3
    assert store.find(KEY.site, KEY.project_id, "work") == [first, other_kernel]
    assert store.find(KEY.site, KEY.project_id, "work", "sage") == [other_kernel]


def test_store_reset_counts_matches():
    store = SessionStore()
    store.get(KEY).record_call("a = 1", 0.1, ok=True)
    store.get(KEY._replace(kernel="sage")).record_call("b = 1", 0.1, ok=True)

    assert store.reset(KEY.site, KEY.project_id, "work") == 2
    assert all(session.inputs == [] for session in store)
    assert store.reset(KEY.site, KEY.project_id, "none") == 0
