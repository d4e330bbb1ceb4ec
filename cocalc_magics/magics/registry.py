"""The table of ``%cocalc`` subcommands and the helpers every subcommand uses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cocalc_magics.magics.arguments import Word
from cocalc_magics.magics.errors import from_client_error
from cocalc_magics.magics.expansion import Expander

if TYPE_CHECKING:
    from cocalc_magics.magics.core import CoCalcMagics

SUBCOMMANDS: dict[str, Callable] = {}


@dataclass(frozen=True)
class LineContext:
    """The raw line of ``%cocalc``, for subcommands that parse it themselves.

    ``words`` starts with the subcommand word.
    """

    line: str
    words: list[Word]
    expander: Expander


def subcommand(name: str, *, summary: str, example: str, raw_words: bool = False):
    """Register a ``magic_arguments``-decorated function as ``%cocalc NAME``.

    Parameters
    ----------
    name
        The subcommand word.
    summary
        One line for the overview in ``%cocalc?``.
    example
        A complete example line, shown in usage errors.
    raw_words
        Pass a :class:`LineContext` instead of parsed options, for subcommands
        that need the line as typed (``exec`` sends its command text unchanged).
    """

    def register(function: Callable) -> Callable:
        function.summary = summary
        function.example = example
        function.raw_words = raw_words
        SUBCOMMANDS[name] = function
        return function

    return register


@contextmanager
def reported(
    magics: CoCalcMagics, operation: str, project_id: str | None = None
) -> Iterator[None]:
    """Turn client errors raised inside the block into one-message magic errors.

    With ``CoCalcMagics.show_tracebacks`` set, the client error propagates with
    its full chain instead.
    """
    from cocalc_magics.api import CoCalcError

    try:
        yield
    except CoCalcError as error:
        if magics.show_tracebacks:
            raise
        raise from_client_error(
            error, operation, project_id=project_id, where=magics.session.where()
        ) from None


def overview() -> str:
    """Return the help text of ``%cocalc``: every subcommand and an example."""
    width = max(len(name) for name in SUBCOMMANDS) if SUBCOMMANDS else 8
    lines = [
        "Drive a CoCalc project from the notebook.",
        "",
        "Usage: %cocalc SUBCOMMAND [options]   (%cocalc SUBCOMMAND --help for details)",
        "",
        "Subcommands:",
    ]
    for name, function in SUBCOMMANDS.items():
        lines.append(f"  {name.ljust(width)}  {function.summary}")
    lines += [
        "",
        "{expression} on the line is replaced by its value from the notebook;",
        "$NAME is left for the remote shell; {{ and }} are literal braces.",
        "Each exec result (full stdout and stderr) is stored in _cocalc, and in",
        "VAR with --out VAR. A non-zero exit code fails the cell unless --no-raise.",
        "With --kernel NAME the code runs on that Jupyter kernel of the project and",
        "its outputs show here; --session S replays earlier inputs to keep state.",
        "",
        "Commands run as jobs: output streams while they run, Ctrl-C stops the",
        "remote process group (SIGINT, SIGTERM, SIGKILL), --detach leaves it",
        "running, --bg returns at once with a live display; %cocalc jobs lists them.",
        "--projects IDS|{list}|@FILE|title:TEXT runs exec, start, stop or status in",
        "many projects with a live grid (--concurrency N, --dry-run);",
        "%cocalc retry reruns the failed ones. %cocalc panel shows a live dashboard.",
        "",
        "Example::",
        "",
        "  In [1]: %load_ext cocalc_magics",
        "  In [2]: %cocalc local",
        "  In [3]: %cocalc exec --timeout 30 -- uname -a",
        "  In [4]: %%cocalc_exec --out result",
        "     ...: ls -la ~",
        "  In [5]: %%cocalc_exec --kernel python3 --session work",
        "     ...: total = sum(range(10))",
        "  In [6]: %cocalc exec --bg --out train -- python train.py",
        "  In [7]: %cocalc exec --projects title:Lab --dry-run -- ls lab1",
    ]
    return "\n".join(lines)
