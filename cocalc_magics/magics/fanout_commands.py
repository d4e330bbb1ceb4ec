"""``--projects``: one exec, start, stop or status in many projects.

The work is done by :mod:`cocalc_magics.fanout`. This module turns the magic's
options into its arguments and stores the result table in ``_cocalc`` (and
``--out VAR``). It fails the cell when a project failed, so "Run All" stops.
The fan-out package is imported only when ``--projects`` is used.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument
from IPython.display import display

from cocalc_magics.magics.arguments import parse_env
from cocalc_magics.magics.errors import CoCalcMagicError, CommandFailedError
from cocalc_magics.magics.registry import reported

if TYPE_CHECKING:
    from cocalc_magics.fanout import FanoutResult
    from cocalc_magics.magics.core import CoCalcMagics

LAST_RESULT_NAME = "_cocalc"


class FanoutFailedError(CommandFailedError):
    """Some projects of a ``--projects`` run failed; ``result`` has every row."""

    def __init__(
        self,
        result: FanoutResult,
        *,
        variable: str,
        where: str,
        retried: int | None = None,
    ) -> None:
        self.result = result
        failed = len(result.failed())
        summary = f"{failed} of {len(result)} projects failed"
        if retried is not None:
            # The grid of a retry counts only the retried projects.
            summary = (
                f"{failed} of {len(result)} projects still failed after retrying "
                f"{retried}"
            )
        retry = (
            "%cocalc retry"
            if variable == LAST_RESULT_NAME
            else (f"%cocalc retry {variable}")
        )
        CoCalcMagicError.__init__(
            self,
            result.operation.describe(),
            summary,
            hint=(
                f"the table is in {variable}; retry the failed ones with {retry} "
                f"or retry_failed({variable}), or pass --no-raise."
            ),
            where=where,
        )


def require_projects(options: argparse.Namespace, subcommand: str) -> None:
    """Reject the fan-out options when ``--projects`` is missing.

    Without this check ``%cocalc start --dry-run`` would start the project.
    """
    given = [
        name
        for name, attribute in (
            ("--dry-run", "dry_run"),
            ("--concurrency", "concurrency"),
            ("--out", "out"),
            ("--no-raise", "no_raise"),
        )
        if getattr(options, attribute, None)
    ]
    if given:
        raise UsageError(
            f"{', '.join(given)} of %cocalc {subcommand} work only with --projects; "
            f"for example: %cocalc {subcommand} --projects title:Lab --dry-run"
        )


def raw_option_value(words: list[str], name: str) -> str | None:
    """Return the unexpanded value of option ``name`` among the magic's words."""
    for index, word in enumerate(words):
        if word == "--":
            return None
        if word == name and index + 1 < len(words):
            return words[index + 1]
        if word.startswith(name + "="):
            return word[len(name) + 1 :]
    return None


def projects_value(options: argparse.Namespace, words: list[str], expander) -> Any:
    """Return the ``--projects`` value, as the object when it is one ``{expr}``."""
    raw = raw_option_value(words, "--projects")
    if raw is None:
        return options.projects
    return expander.expand_value(raw)


def resolve_targets(magics: CoCalcMagics, value: Any, operation: str) -> list:
    """Resolve a ``--projects`` value, raising ``UsageError`` for a bad one."""
    from cocalc_magics.fanout import ProjectsOptionError, resolve_projects

    try:
        with reported(magics, operation):
            return resolve_projects(value, magics.session.connection)
    except ProjectsOptionError as error:
        raise UsageError(str(error)) from None


def _runner_options(magics: CoCalcMagics, options: argparse.Namespace) -> dict:
    return {
        "concurrency": options.concurrency or magics.fanout_concurrency,
        "max_rate": magics.fanout_max_rate,
    }


def run_exec_many(
    magics: CoCalcMagics, options: argparse.Namespace, command: str
) -> None:
    """Run ``command`` in every project of ``--projects``; see the module doc."""
    from cocalc_magics.fanout import exec_many

    if options.bg or options.detach:
        raise UsageError(
            "--bg and --detach work on one project; a --projects run shows its own "
            "live grid, and Ctrl-C cancels it."
        )
    if options.project:
        raise UsageError("give either --project or --projects, not both")
    env = parse_env(options.env)
    targets = resolve_targets(magics, options.projects, "fan-out exec")
    keywords = {
        "path": options.path,
        "cwd": options.cwd,
        "env": env,
        "timeout": options.timeout or magics.timeout,
        "max_output": options.max_output or magics.max_output,
        "start_stopped": magics.start_stopped_projects,
        "start_timeout": magics.start_timeout,
        **_runner_options(magics, options),
    }
    run = _fanout_call(exec_many, magics.session.connection, targets, command)
    _finish(magics, options, run, keywords, "fan-out exec")


def run_project_many(
    magics: CoCalcMagics, kind: str, options: argparse.Namespace
) -> None:
    """Run ``start``, ``stop`` or ``status`` in every project of ``--projects``."""
    from cocalc_magics.fanout import start_many, status_many, stop_many

    if getattr(options, "project", None):
        raise UsageError("give either --project or --projects, not both")
    function = {"start": start_many, "stop": stop_many, "status": status_many}[kind]
    targets = resolve_targets(magics, options.projects, f"fan-out {kind}")
    keywords = _runner_options(magics, options)
    if kind == "start":
        keywords["start_timeout"] = options.timeout or magics.start_timeout
    run = _fanout_call(function, magics.session.connection, targets)
    _finish(magics, options, run, keywords, f"fan-out {kind}")


def _fanout_call(function, *args):
    def call(**keywords):
        return function(*args, **keywords)

    return call


def _finish(magics, options, run, keywords: dict, operation: str) -> None:
    from cocalc_magics.fanout import FanoutInterrupted

    if getattr(options, "dry_run", False):
        with reported(magics, f"{operation} (dry run)"):
            plan = run(dry_run=True, **keywords)
        store_result(magics, options, plan)
        display(plan)
        return

    try:
        with reported(magics, operation):
            result = run(**keywords)
    except FanoutInterrupted as error:
        # The rows so far, and any job left running, stay reachable.
        store_result(magics, options, error.result)
        raise
    store_result(magics, options, result)
    raise_on_failures(magics, options, result)


def store_result(magics: CoCalcMagics, options, result) -> str:
    """Store ``result`` in ``_cocalc`` and in ``--out VAR``; return the name shown."""
    magics.shell.user_ns[LAST_RESULT_NAME] = result
    out = getattr(options, "out", None)
    if out:
        magics.shell.user_ns[out] = result
    return out or LAST_RESULT_NAME


def raise_on_failures(
    magics: CoCalcMagics, options, result: FanoutResult, *, retried: int | None = None
) -> None:
    """Raise ``FanoutFailedError`` when a project failed, unless ``--no-raise``.

    *retried* is the number of projects a retry ran again, for the message.
    """
    if not result.failed().rows:
        return
    if magics.raise_on_failure and not getattr(options, "no_raise", False):
        raise FanoutFailedError(
            result,
            variable=getattr(options, "out", None) or LAST_RESULT_NAME,
            where=magics.session.where(),
            retried=retried,
        )


def fanout_project_options(*, dry_run: bool):
    """Decorate start, stop or status with the options of a ``--projects`` run."""
    from cocalc_magics.magics.arguments import PROJECTS_OPTIONS, _variable_name

    options = [
        *PROJECTS_OPTIONS,
        argument(
            "--no-raise",
            action="store_true",
            help="with --projects: do not fail the cell when some projects fail.",
        ),
        argument(
            "--out",
            type=_variable_name,
            metavar="VAR",
            help="with --projects: store the result table in this variable too.",
        ),
    ]
    if dry_run:
        options.append(
            argument(
                "--dry-run",
                action="store_true",
                help=(
                    "with --projects: say how many projects would be touched and "
                    "how many would have to be started; change nothing."
                ),
            )
        )

    def decorate(function):
        for option in reversed(options):
            function = option(function)
        return function

    return decorate
