"""Random magic lines: only UsageError may come out, and garbage is never sent.

Hypothesis builds ``%cocalc exec`` lines and ``%%cocalc_exec`` headers from
options, values, quotes and ``{expressions}``, valid and broken. For each line:

- a rejected line raises ``UsageError`` and the fake server received nothing;
- an accepted line sent well-formed requests (the types and units of CoCalc's
  ``system.exec`` options), and any failure is the magics' own error type;
- nothing else (TypeError, KeyError, ...) ever escapes.

``--projects`` (fan-out) is left out: it is tested in ``tests/fanout``.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from tests.faults.test_magic_faults import exec_handler, job_record

OPTIONS = [
    "--timeout",
    "--path",
    "--cwd",
    "--env",
    "--out",
    "--max-output",
    "--project",
    "--compute-server",
    "--kernel",
    "--session",
    "--no-raise",
    "--quiet",
    "--dry-run",
    "--bg",
    "--detach",
    "--concurrency",
    "--",
    "-t",
    "--time",
    "--nope",
]
VALUES = [
    "5",
    "0",
    "-1",
    "1e9",
    "nan",
    "inf",
    "3.5",
    "abc",
    "A=1",
    "=1",
    "A=",
    "'a b'",
    '"a b"',
    "'unbalanced",
    '"unbalanced',
    "{x}",
    "{missing}",
    "{1/0}",
    "{x!r}",
    "{x:>4}",
    "{name}",
    "{{",
    "}}",
    "{",
    "}",
    "{}",
    "$HOME",
    "${HOME}",
    "python3",
    "11111111-2222-3333-4444-555555555555",
    "not-a-uuid",
    "ünïcødé",
    "\\",
    "#",
    ";",
    "&&",
    "|",
]
WORDS = st.one_of(st.sampled_from(OPTIONS), st.sampled_from(VALUES))
RANDOM_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@st.composite
def magic_lines(draw) -> str:
    words = draw(st.lists(st.one_of(WORDS, RANDOM_TEXT), max_size=8))
    return " ".join(words)


EXEC_OPTION_TYPES = {
    "command": str,
    "bash": bool,
    "timeout": (int, float),
    "max_output": int,
    "path": str,
    "cwd": str,
    "env": dict,
    "err_on_exit": bool,
    "async_call": bool,
    "async_get": str,
    "async_await": bool,
    "async_stats": bool,
}


def assert_well_formed(request) -> None:
    """Check one recorded request against the types CoCalc expects."""
    body = request.json
    assert isinstance(body, dict), request.body[:200]
    assert isinstance(body.get("name"), str)
    assert isinstance(body.get("args"), list)
    timeout = body.get("timeout")
    assert isinstance(timeout, int) and timeout > 0, body
    if body["name"] != "system.exec":
        return
    (options,) = body["args"]
    for key, value in options.items():
        assert key in EXEC_OPTION_TYPES, key
        assert isinstance(value, EXEC_OPTION_TYPES[key]), (key, value)
    if "timeout" in options:
        assert options["timeout"] >= 0 and options["timeout"] == options["timeout"]
    if "max_output" in options:
        assert options["max_output"] > 0
    for name, value in (options.get("env") or {}).items():
        assert isinstance(name, str) and name and isinstance(value, str)
    if "command" in options:
        assert options["command"].strip()


@pytest.fixture
def answering(shell, fake):
    fake.on("system.exec", exec_handler([job_record("completed", stdout="ok\n")]))
    fake.script("system.jupyterExecute", [{"name": "stdout", "text": "1\n"}])
    shell.user_ns.update(x=3, name="a b")
    return fake


OUTCOMES: dict[str, int] = {}

# A rejected line that raises the magics' error instead of UsageError.
KNOWN_NOT_USAGE_ERROR = "invalid project id"


def run_line(shell, fake, kind: str, line: str) -> None:
    from cocalc_magics.jobs import stop_watchers
    from cocalc_magics.magics.errors import CoCalcMagicError

    fake.requests.clear()
    try:
        with capture_output():
            if kind == "line":
                shell.run_line_magic("cocalc", f"exec {line}")
            else:
                shell.run_cell_magic("cocalc_exec", line, "echo body\n")
    except UsageError:
        assert fake.requests == [], f"{line!r} was rejected after sending a request"
        outcome = "rejected"
    except CoCalcMagicError as error:
        if KNOWN_NOT_USAGE_ERROR in str(error):
            # Reported by test_invalid_project_id_is_usage_error below.
            assert fake.requests == []
            outcome = "rejected"
        else:
            # A failure the site reported: the line itself was accepted.
            assert fake.requests, f"{line!r} failed without a request"
            outcome = "failed remotely"
    except KeyboardInterrupt as error:
        raise AssertionError(f"{line!r} raised KeyboardInterrupt") from error
    else:
        outcome = "sent" if fake.requests else "nothing sent"
    finally:
        stop_watchers()
    OUTCOMES[outcome] = OUTCOMES.get(outcome, 0) + 1
    for request in fake.requests:
        assert_well_formed(request)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(line=magic_lines(), kind=st.sampled_from(["line", "cell"]))
def test_random_exec_lines(shell, answering, kind, line):
    run_line(shell, answering, kind, line)


def test_random_lines_reach_both_outcomes():
    # Runs after the test above: the strategy must produce lines that are sent as
    # well as lines that are rejected, or the test above proves little.
    if not OUTCOMES:
        pytest.skip("runs only after the random line test")
    print(OUTCOMES)
    assert OUTCOMES.get("rejected", 0) >= 10, OUTCOMES
    assert OUTCOMES.get("sent", 0) >= 10, OUTCOMES


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    line=magic_lines(), subcommand=st.sampled_from(["ls", "ping", "call", "kernels"])
)
def test_random_subcommand_lines(shell, answering, subcommand, line):
    from cocalc_magics.magics.errors import CoCalcMagicError

    answering.requests.clear()
    try:
        with capture_output():
            shell.run_line_magic("cocalc", f"{subcommand} {line}")
    except UsageError:
        assert answering.requests == []
    except CoCalcMagicError as error:
        if KNOWN_NOT_USAGE_ERROR not in str(error):
            assert answering.requests
    for request in answering.requests:
        assert_well_formed(request)


@pytest.mark.parametrize("kind", ["line", "cell"])
def test_invalid_project_id_is_usage_error(shell, answering, kind):
    with pytest.raises(UsageError), capture_output():
        if kind == "line":
            shell.run_line_magic("cocalc", "exec --project 5 echo hi")
        else:
            shell.run_cell_magic("cocalc_exec", "--project 5", "echo hi\n")
    assert answering.requests == []
