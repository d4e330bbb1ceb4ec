"""The ``CoCalcMagics`` class: ``%cocalc`` and ``%%cocalc_exec``.

Both magics are registered with ``@no_var_expand``, so IPython's own ``$name`` and
``{name}`` expansion never touches the line: ``$NAME`` must reach the remote shell,
and ``{expression}`` is expanded by :mod:`cocalc_magics.magics.expansion` with one
strict rule.
"""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import (
    Magics,
    cell_magic,
    line_magic,
    magics_class,
    no_var_expand,
)
from IPython.core.magic_arguments import magic_arguments
from traitlets import observe

from cocalc_magics.magics import subcommands
from cocalc_magics.magics.arguments import (
    exec_options,
    expand_words,
    parse_words,
    split_words,
)
from cocalc_magics.magics.config import CoCalcMagicsConfig
from cocalc_magics.magics.expansion import Expander
from cocalc_magics.magics.fanout_commands import projects_value
from cocalc_magics.magics.rendering import show_notice
from cocalc_magics.magics.session import Session

_CELL_EXAMPLE = "%%cocalc_exec --timeout 30 (then the bash script on the next lines)"


@magics_class
class CoCalcMagics(Magics, CoCalcMagicsConfig):
    """Magics that run commands in CoCalc projects and manage them."""

    def __init__(self, shell=None, **kwargs) -> None:
        super().__init__(shell=shell, **kwargs)
        self.session = Session(self)

    @observe("host", "project")
    def _site_or_project_changed(self, change) -> None:
        # The connection was built from the earlier values (or by %cocalc local or
        # connect); without this, %config would be ignored until a reload.
        session = getattr(self, "session", None)
        if session is None or session._connection is None:
            return
        if change["name"] == "project" and change["new"]:
            session.use_project(change["new"])
            show_notice(
                f"The magics now use project {change['new']} on {session.where()}."
            )
        else:
            session.close()
            show_notice("The magics will connect with the new settings on next use.")

    @no_var_expand
    @line_magic
    def cocalc(self, line: str):
        """Drive a CoCalc project: run commands, check and manage the project."""
        words = split_words(line)
        if not words:
            print(subcommands.overview())
            return None

        name = words[0].text
        if name in ("-h", "--help", "help"):
            print(subcommands.overview())
            return None
        handler = subcommands.SUBCOMMANDS.get(name)
        if handler is None:
            raise UsageError(_unknown_subcommand(name))

        expander = Expander(self.shell.user_ns)
        context = subcommands.LineContext(line, words, expander)
        if handler.raw_words:
            return handler(self, context)

        options = parse_words(
            handler,
            expand_words(words[1:], expander),
            usage_example=handler.example,
        )
        if options is None:
            return None
        if getattr(options, "projects", None) is not None:
            options.projects = projects_value(
                options, [word.text for word in words[1:]], expander
            )
        return handler(self, options)

    @no_var_expand
    @magic_arguments()
    @exec_options
    @cell_magic
    def cocalc_exec(self, line: str, cell: str):
        """Run the cell body as a bash script, or on a Jupyter kernel, in a project.

        The body is sent byte for byte: no ``{expression}`` or ``$name`` expansion
        happens in it. ``{expression}`` on the magic line is expanded from the
        notebook's namespace.

        With ``--kernel NAME`` the body is code for that Jupyter kernel of the
        project, and its outputs (text, images, HTML, errors) show here as if the
        cell had run locally. Each call starts a fresh remote kernel; with
        ``--session S`` the earlier successful inputs of session S are replayed
        first (see ``%cocalc session S``). The result object, with the raw output
        items, is stored in ``_cocalc`` (and in ``--out VAR``).

        Examples::

            In [1]: %%cocalc_exec --path work --timeout 120
               ...: make -j2 && ./run-tests

            In [2]: %%cocalc_exec --kernel python3 --session work
               ...: import pandas as pd
               ...: frame = pd.read_csv("data.csv")
        """
        expander = Expander(self.shell.user_ns)
        words = split_words(line)
        options = parse_words(
            CoCalcMagics.cocalc_exec,
            expand_words(words, expander),
            usage_example=_CELL_EXAMPLE,
        )
        if options is None:
            return
        if options.projects is not None:
            options.projects = projects_value(
                options, [word.text for word in words], expander
            )

        if not cell.strip():
            raise UsageError(
                "the cell body is empty: write the bash script (or with --kernel, "
                "the code) to run below the magic line, for example:  "
                "%%cocalc_exec  then  ls -la"
            )
        subcommands.run_exec(self, options, cell)
        return


def _unknown_subcommand(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, subcommands.SUBCOMMANDS, n=1)
    suggestion = f"did you mean '{close[0]}'? " if close else ""
    return (
        f"unknown subcommand '{name}'; {suggestion}run %cocalc? or %cocalc help for "
        "the list."
    )


CoCalcMagics.cocalc.__doc__ = subcommands.overview()
