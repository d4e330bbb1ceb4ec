"""The magic line grammar: shell splitting, {expression} expansion, options, help.

Checks here need no server: every line is rejected (or gets help) before
a connection is even built. Tests that look at the request a line produces are in
test_magic_requests.py.
"""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from cocalc_magics.magics.arguments import command_text, split_words
from cocalc_magics.magics.expansion import Expander


def expand(text: str, **namespace) -> str:
    return Expander(namespace).expand(text)


class TestExpansion:
    def test_name_and_expression(self):
        assert expand("echo {n} {n * 2}", n=3) == "echo 3 6"

    def test_dollar_names_untouched(self):
        line = "echo $HOME ${HOME} ${HOME:-/x} $n"
        assert expand(line, HOME="/local/python/value", n=3) == line

    def test_empty_braces_pass_through(self):
        line = "find . -name '*.txt' -exec wc -l {} +"
        assert expand(line) == line

    def test_doubled_braces_are_literal(self):
        assert expand("echo {{a,b}} {{1..3}}") == "echo {a,b} {1..3}"

    def test_undefined_name_names_it(self):
        with pytest.raises(UsageError) as caught:
            expand("echo {n} {missing}", n=3)
        assert type(caught.value) is UsageError
        assert "'missing'" in str(caught.value)
        assert "not defined" in str(caught.value)

    def test_not_an_expression_rejected(self):
        with pytest.raises(UsageError) as caught:
            expand("echo {1..5}")
        assert "{{1..5}}" in str(caught.value)

    def test_unclosed_brace_rejected(self):
        with pytest.raises(UsageError, match="unbalanced"):
            expand("echo {n", n=1)

    def test_failing_expression_reported(self):
        with pytest.raises(UsageError, match="ZeroDivisionError"):
            expand("echo {1/0}")

    def test_expression_evaluated_once(self):
        calls = []
        expander = Expander({"tick": lambda: calls.append(1) or len(calls)})
        assert expander.expand("{tick()}") == "1"
        assert expander.expand("{tick()} {tick()}") == "1 1"
        assert calls == [1]

    def test_non_ascii_value(self):
        assert expand("echo {word}", word="Grüße 🚀") == "echo Grüße 🚀"

    def test_nested_braces_in_expression(self):
        assert expand("echo {d['k']} {({'a': 1})['a']}", d={"k": "v"}) == "echo v 1"


class TestSplitting:
    def test_quoted_value_with_spaces(self):
        words = split_words('--cwd "/home/user/My Project" ls -la')
        assert [w.text for w in words] == [
            "--cwd",
            "/home/user/My Project",
            "ls",
            "-la",
        ]

    def test_quotes_inside_values(self):
        words = split_words("""--env "GREETING=hello world" --env 'EMPTY=' x""")
        assert [w.text for w in words] == [
            "--env",
            "GREETING=hello world",
            "--env",
            "EMPTY=",
            "x",
        ]

    def test_unbalanced_quote(self):
        with pytest.raises(UsageError) as caught:
            split_words('exec echo "oops')
        assert type(caught.value) is UsageError
        assert "quot" in str(caught.value)

    def test_hash_is_not_a_comment(self):
        assert [w.text for w in split_words("echo a#b # c")] == [
            "echo",
            "a#b",
            "#",
            "c",
        ]

    def test_command_text_keeps_typed_quoting(self):
        line = """exec --timeout 5 echo "it's here"  """
        words = split_words(line)
        assert command_text(line, words, 3) == """echo "it's here\""""

    def test_command_text_after_double_dash(self):
        line = "exec --path 'a b' -- ls  -la"
        words = split_words(line)
        assert command_text(line, words, 4) == "ls  -la"


class TestUsageErrors:
    """Bad lines raise IPython's UsageError itself, one line, before any request."""

    @pytest.mark.parametrize(
        "line, expected",
        [
            ('exec echo "oops', "quote"),
            ("exc ls", "did you mean 'exec'"),
            ("exec", "no command"),
            ("exec --timeout 5 --", "no command"),
            ("exec --timeout soon ls", "'soon' is not a number of seconds"),
            ("exec --timeout -1 ls", "must be above 0"),
            ("exec --max-output 0 ls", "must be above 0"),
            ("exec --out 1x ls", "not a Python variable name"),
            ("exec --env NOEQUALS ls", "NAME=VALUE"),
            ("exec --env 'BAD NAME=1' ls", "NAME=VALUE"),
            ("exec --compute-server -2 ls", "must be 0 or more"),
            ("exec --bogus ls", "unrecognized arguments"),
            ("exec echo {missing}", "'missing'"),
            ("call system.ping '{not json'", "not valid JSON"),
            ("call system.ping 3", "JSON array or object"),
            ('call projects.setQuotas {"memory": 1000}', "put them in single quotes"),
            ('call system.listing \'[{{"path": ""}}]\'', "write single braces"),
            ("ping extra", "unrecognized arguments"),
        ],
    )
    def test_line_rejected(self, shell, line, expected):
        with pytest.raises(UsageError) as caught:
            shell.run_line_magic("cocalc", line)
        assert type(caught.value) is UsageError
        assert expected in str(caught.value)
        assert "\n" not in str(caught.value)

    def test_option_error_shows_example(self, shell):
        with pytest.raises(UsageError) as caught:
            shell.run_line_magic("cocalc", "exec --timeout soon ls")
        assert "for example: %cocalc exec" in str(caught.value)

    @pytest.mark.parametrize("body", ["", "   \n\n  \t\n"])
    def test_empty_cell_body(self, shell, body):
        with pytest.raises(UsageError) as caught:
            shell.run_cell_magic("cocalc_exec", "--cwd /tmp", body)
        assert type(caught.value) is UsageError
        assert "cell body is empty" in str(caught.value)

    def test_cell_rejects_positional_words(self, shell):
        with pytest.raises(UsageError, match="unrecognized arguments"):
            shell.run_cell_magic("cocalc_exec", "ls -la", "pwd\n")

    def test_cell_unbalanced_quote(self, shell):
        with pytest.raises(UsageError, match="quote"):
            shell.run_cell_magic("cocalc_exec", "--path 'notes", "ls\n")


class TestHelp:
    def test_bare_magic_prints_overview(self, shell, capsys):
        assert shell.run_line_magic("cocalc", "") is None
        printed = capsys.readouterr().out
        for name in ("exec", "status", "doctor", "local", "call", "quotas"):
            assert f"  {name} " in printed

    def test_question_mark_help(self, shell):
        doc = shell.magics_manager.magics["line"]["cocalc"].__doc__
        assert "Subcommands:" in doc
        assert "%cocalc exec" in doc

    def test_subcommand_help(self, shell, capsys):
        shell.run_line_magic("cocalc", "exec --help")
        printed = capsys.readouterr().out
        assert printed.lstrip().startswith("%cocalc exec [--project PROJECT_ID]")
        assert "--timeout SECONDS" in printed
        assert "--dry-run" in printed

    @pytest.mark.parametrize(
        "name",
        [
            "ping",
            "status",
            "start",
            "stop",
            "restart",
            "quotas",
            "projects",
            "kernels",
            "ls",
            "call",
            "doctor",
            "config",
            "connect",
            "local",
        ],
    )
    def test_every_subcommand_has_help(self, shell, capsys, name):
        shell.run_line_magic("cocalc", f"{name} -h")
        printed = capsys.readouterr().out
        assert f"%cocalc {name}" in printed

    def test_cell_magic_help_lists_shared_options(self, shell):
        doc = shell.magics_manager.magics["cell"]["cocalc_exec"].__doc__
        for option in (
            "--timeout",
            "--env",
            "--out",
            "--no-raise",
            "--max-output",
            "--compute-server",
            "--dry-run",
            "--path",
            "--project",
        ):
            assert option in doc
