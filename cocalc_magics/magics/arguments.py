"""The grammar of ``%cocalc`` and ``%%cocalc_exec``: splitting, options and parsing.

A magic line is split the way a POSIX shell splits words (:mod:`shlex`), so an
option value with spaces or quotes needs shell quoting and an unbalanced quote is a
``UsageError``. IPython's own ``parse_argstring`` splits in non-POSIX mode, which
keeps the quotes inside the values, so the magics split here instead and hand the
words to the ``magic_arguments`` parser.

Each word remembers where it ends in the original line. The line form of exec uses
that to send the command exactly as typed (after ``{expression}`` expansion), rather
than words rejoined by us.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument

from cocalc_magics.magics.expansion import Expander


@dataclass(frozen=True)
class Word:
    """One shell word of a magic line and the offset just past it in the line."""

    text: str
    end: int


def split_words(line: str) -> list[Word]:
    """Split ``line`` into shell words, raising ``UsageError`` on bad quoting."""
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""

    words = []
    while True:
        try:
            token = lexer.get_token()
        except ValueError as error:
            raise UsageError(
                f"cannot split the magic line: {error} ({line.strip()!r}); close the "
                "quote, or escape it with a backslash."
            ) from None
        if token is None:
            return words
        words.append(Word(token, lexer.instream.tell()))


def parse_words(function: Callable, words: list[str], *, usage_example: str):
    """Parse ``words`` with the ``magic_arguments`` parser of ``function``.

    Returns the argparse namespace, or ``None`` when ``-h``/``--help`` was given
    (the help is printed then).
    """
    parser = function.parser
    if words and words[0] in ("-h", "--help"):
        # IPython's usage line starts with "::", reStructuredText for docstrings.
        print(parser.format_help().removeprefix("::\n\n"))
        return None

    try:
        return parser.parse_args(words)
    except UsageError as error:
        raise UsageError(f"{error}; for example: {usage_example}") from None


def parse_env(pairs: list[str] | None) -> dict[str, str] | None:
    """Turn repeated ``--env K=V`` values into a dict, validating each name."""
    if not pairs:
        return None

    env = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator or not name or not name.replace("_", "a").isalnum():
            raise UsageError(
                f"--env {pair!r} is invalid; write NAME=VALUE with NAME made of "
                "letters, digits and underscores, for example --env GREETING=hi."
            )
        env[name] = value
    return env


def expand_words(words: list[Word], expander: Expander) -> list[str]:
    """Expand ``{expression}`` fields in every word of an options list."""
    return [expander.expand(word.text) for word in words]


def command_text(line: str, words: list[Word], option_count: int) -> str:
    """Return the raw text of ``line`` after its first ``option_count`` words."""
    start = words[option_count - 1].end if option_count else 0
    return line[start:].strip()


def _positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds")
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be above 0 seconds")
    return seconds


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number")
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be above 0")
    return number


def _non_negative_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number")
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be 0 or more")
    return number


def _variable_name(value: str) -> str:
    if not value.isidentifier():
        raise argparse.ArgumentTypeError(f"{value!r} is not a Python variable name")
    return value


def _concurrency(value: str) -> int:
    return _positive_int(value)


# Options of every subcommand that can fan out over many projects.
PROJECTS_OPTIONS = [
    argument(
        "--projects",
        metavar="PROJECTS",
        help=(
            "run in many projects at once: project ids separated by commas or "
            "spaces, {expression} giving a list of ids or project objects, @FILE "
            "(or a file path) with one id per line, or title:TEXT to search the "
            "titles. Shows a live grid; the result table is stored in _cocalc."
        ),
    ),
    argument(
        "--concurrency",
        type=_concurrency,
        metavar="N",
        help=(
            "with --projects: projects worked on at once (default: "
            "CoCalcMagics.fanout_concurrency, 10)."
        ),
    ),
]


# Options of `%cocalc exec` and `%%cocalc_exec`, declared once. They are listed in
# the order they appear in the help; `exec_options` applies them bottom-up as
# decorators must be.
_EXEC_OPTIONS = [
    argument(
        "--project",
        metavar="PROJECT_ID",
        help="project to run in (default: the connected project).",
    ),
    argument(
        "--path",
        help="working directory, relative to the project's home or absolute.",
    ),
    argument(
        "--cwd",
        help="absolute working directory; overrides --path when both are given.",
    ),
    argument(
        "--timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        help=(
            "wall-clock limit of the command in seconds, including the start of a "
            "stopped project (default: CoCalcMagics.timeout). With --kernel: the "
            "server's time limit per run, for the replayed session and for the "
            "code each (default: the server's 30 s)."
        ),
    ),
    argument(
        "--env",
        action="append",
        metavar="NAME=VALUE",
        help="environment variable for the command; repeat for more.",
    ),
    argument(
        "--out",
        type=_variable_name,
        metavar="VAR",
        help=(
            "store the result object (full stdout and stderr; with --kernel also "
            "the raw output items) in this variable."
        ),
    ),
    argument(
        "--no-raise",
        action="store_true",
        help=(
            "do not fail the cell when the command exits with a non-zero code (with "
            "--kernel: when the remote code raises; its traceback is printed)."
        ),
    ),
    argument(
        "--quiet",
        action="store_true",
        help="show no output; the result is still stored (see --out).",
    ),
    argument(
        "--max-output",
        type=_positive_int,
        metavar="CHARS",
        help=(
            "cap on stdout and on stderr, each, in characters, applied by the "
            "server (default: CoCalcMagics.max_output)."
        ),
    ),
    argument(
        "--compute-server",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="run on compute server N of the project (default 0: the project).",
    ),
    argument(
        "--kernel",
        metavar="NAME",
        help=(
            "run the code on this Jupyter kernel of the project (e.g. python3) and "
            "show its outputs here, instead of running a bash script. See "
            "%%cocalc kernels for the names."
        ),
    ),
    argument(
        "--session",
        metavar="NAME",
        help=(
            "with --kernel: replay the earlier successful inputs of this session "
            "first, so variables persist across cells (see %%cocalc session NAME)."
        ),
    ),
    argument(
        "--dry-run",
        action="store_true",
        help=(
            "show the request that would be sent, with the key masked; send "
            "nothing. With --projects: say how many projects would be touched and "
            "how many would have to be started."
        ),
    ),
    argument(
        "--bg",
        action="store_true",
        help=(
            "return at once and run the command as a background job; its live "
            "display keeps updating while other cells run. The job is stored in "
            "_cocalc (and --out VAR); %%cocalc job ID shows it."
        ),
    ),
    argument(
        "--detach",
        action="store_true",
        help=(
            "on Ctrl-C, leave the job running in the background and print its id, "
            "instead of stopping it with SIGINT, SIGTERM, then SIGKILL."
        ),
    ),
    *PROJECTS_OPTIONS,
]


def projects_options(function: Callable) -> Callable:
    """Decorate ``function`` with ``--projects`` and ``--concurrency``."""
    for option in reversed(PROJECTS_OPTIONS):
        function = option(function)
    return function


def exec_options(function: Callable) -> Callable:
    """Decorate ``function`` with the options shared by both exec magics."""
    for option in reversed(_EXEC_OPTIONS):
        function = option(function)
    return function
