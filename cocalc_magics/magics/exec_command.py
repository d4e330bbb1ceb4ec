"""``%cocalc exec`` and the steps it shares with ``%%cocalc_exec``."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments

from cocalc_magics.magics.arguments import (
    command_text,
    exec_options,
    parse_env,
    parse_words,
)
from cocalc_magics.magics.errors import CommandFailedError
from cocalc_magics.magics.execution import (
    ExecRequest,
    describe_first_request,
    run_command,
)
from cocalc_magics.magics.registry import LineContext, reported, subcommand
from cocalc_magics.magics.rendering import show_command_output, show_notice
from cocalc_magics.magics.results import CommandResult

if TYPE_CHECKING:
    from cocalc_magics.magics.core import CoCalcMagics

# Every exec result is also stored under this name, so the full output of a
# command whose display was cut is always reachable.
LAST_RESULT_NAME = "_cocalc"

_EXEC_EXAMPLE = "%cocalc exec --timeout 30 -- ls -la"


@subcommand(
    "exec",
    summary="run a shell command (or with --kernel, code) in the project",
    example=_EXEC_EXAMPLE,
    raw_words=True,
)
@magic_arguments("cocalc exec")
@exec_options
@argument(
    "command",
    nargs=argparse.REMAINDER,
    help="the command, run by bash in the project exactly as typed after the options.",
)
def exec_subcommand(magics: CoCalcMagics, context: LineContext):
    """Run a command in the project and return a ``CommandResult``.

    The command starts at the first word that is not an option (or after ``--``)
    and is sent as typed, as a bash script, after ``{expression}`` expansion.
    ``$NAME`` is left for the remote shell. With ``--kernel NAME`` the rest of the
    line is code for that kernel, sent as typed without expansion, and the
    outputs are shown instead of returned (the result is in ``_cocalc``).
    """
    words = [word.text for word in context.words[1:]]
    # A first parse finds where the command starts. Its words are expanded only
    # where that works, because code for --kernel is not expanded at all.
    options = parse_words(
        exec_subcommand,
        [_expand_or_keep(context.expander, word) for word in words],
        usage_example=_EXEC_EXAMPLE,
    )
    if options is None:
        return None

    option_count = len(words) - len(options.command)
    if options.command[:1] == ["--"]:
        option_count += 1
    # context.words starts with the subcommand word itself.
    raw = command_text(context.line, context.words, 1 + option_count)
    if options.kernel:
        # Code for a kernel is left as typed, like a cell body: braces are syntax
        # in most kernel languages. Only the options are expanded.
        option_words = words[:option_count]
        command = raw
    else:
        option_words = words
        command = context.expander.expand(raw)
    options = parse_words(
        exec_subcommand,
        [context.expander.expand(word) for word in option_words],
        usage_example=_EXEC_EXAMPLE,
    )
    if not command.strip():
        raise UsageError(f"no command given to run; for example: {_EXEC_EXAMPLE}")
    return run_exec(magics, options, command)


def _expand_or_keep(expander, word: str) -> str:
    try:
        return expander.expand(word)
    except UsageError:
        return word


def run_exec(
    magics: CoCalcMagics, options: argparse.Namespace, command: str
) -> CommandResult | None:
    """Send ``command`` with the exec ``options``, show and store the result.

    Raises ``CommandFailedError`` after showing the output when the command exits
    with a non-zero code, unless ``--no-raise`` or ``raise_on_failure`` is off.
    With ``--kernel`` the command is code for that kernel instead: see
    :func:`~cocalc_magics.magics.kernel_command.run_kernel`.
    """
    from cocalc_magics.magics.kernel_command import check_kernel_options, run_kernel

    check_kernel_options(options)
    if options.kernel is not None:
        return run_kernel(magics, options, command)

    request = _build_request(magics, options, command)
    if options.dry_run:
        _show_dry_run(magics, request)
        return None

    with reported(magics, "project exec", request.project_id):
        result = run_command(
            magics.session.connection,
            request,
            where=magics.session.where(),
            start_stopped=magics.start_stopped_projects,
            running_projects=magics.session.running_projects,
        )

    variable = options.out or LAST_RESULT_NAME
    magics.shell.user_ns[LAST_RESULT_NAME] = result
    if options.out:
        magics.shell.user_ns[options.out] = result
    if not options.quiet:
        show_command_output(result, budget=magics.output_budget, variable=variable)

    if result.exit_code != 0:
        if magics.raise_on_failure and not options.no_raise:
            raise CommandFailedError(result, where=magics.session.where())
        if not options.quiet:
            show_notice(f"exit code {result.exit_code}")
    return result


def _build_request(
    magics: CoCalcMagics, options: argparse.Namespace, command: str
) -> ExecRequest:
    # Every check of the input comes before the connection is built.
    env = parse_env(options.env)
    with reported(magics, "project exec"):
        project_id = magics.session.project_id(options.project)
    return ExecRequest(
        command=command,
        project_id=project_id,
        timeout=options.timeout or magics.timeout,
        max_output=options.max_output or magics.max_output,
        path=options.path,
        cwd=options.cwd,
        env=env,
        compute_server_id=options.compute_server,
    )


def _show_dry_run(magics: CoCalcMagics, request: ExecRequest) -> None:
    with reported(magics, "project exec (dry run)", request.project_id):
        described = describe_first_request(magics.session.connection, request)
    text = json.dumps(described, indent=2, ensure_ascii=False)
    show_notice(f"Dry run on {magics.session.where()}: nothing was sent.\n{text}")
