"""``%cocalc exec`` and the steps it shares with ``%%cocalc_exec``."""

from __future__ import annotations

import argparse
import json
import re
from typing import TYPE_CHECKING

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments

from cocalc_magics.magics.arguments import (
    command_text,
    exec_options,
    parse_env,
    parse_words,
)
from cocalc_magics.magics.errors import CommandFailedError, JobDetached
from cocalc_magics.magics.execution import (
    ExecRequest,
    JobOptions,
    describe_first_request,
    run_command,
)
from cocalc_magics.magics.fanout_commands import projects_value, run_exec_many
from cocalc_magics.magics.registry import LineContext, reported, subcommand
from cocalc_magics.magics.rendering import (
    show_command_output,
    show_notice,
    show_output_notices,
)
from cocalc_magics.magics.results import CommandResult

if TYPE_CHECKING:
    from cocalc_magics.magics.core import CoCalcMagics

# Every exec result is also stored under this name, so the full output of a
# command whose display was cut is always reachable.
LAST_RESULT_NAME = "_cocalc"

_EXEC_EXAMPLE = "%cocalc exec --timeout 30 -- ls -la"
# An {expression} field of the magic line, without nested braces.
_FIELD = re.compile(r"\{[^{}]*\}")


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
    # A first parse finds where the command starts. Each {field} is replaced by 0
    # there, so nothing is evaluated yet. Code for --kernel is never expanded, and
    # a field that the shell rules split into several words is expanded whole later.
    probe = [_FIELD.sub("0", word) for word in words]
    try:
        options = parse_words(exec_subcommand, probe, usage_example=_EXEC_EXAMPLE)
    except UsageError:
        if probe == words:
            raise
        # A field stands for a value that 0 cannot be (a variable name, say), so
        # the fields are evaluated where that works.
        expanded = [_expand_or_keep(context.expander, word) for word in words]
        options = parse_words(exec_subcommand, expanded, usage_example=_EXEC_EXAMPLE)
    if options is None:
        return None

    option_count = len(words) - len(options.command)
    if options.command[:1] == ["--"]:
        option_count += 1
    option_words = words[:option_count]
    if any("{" in word for word in option_words):
        options = parse_words(
            exec_subcommand,
            [context.expander.expand(word) for word in option_words],
            usage_example=_EXEC_EXAMPLE,
        )

    # context.words starts with the subcommand word itself.
    raw = command_text(context.line, context.words, 1 + option_count)
    # Code for a kernel is left as typed, like a cell body: braces are syntax in
    # most kernel languages.
    command = raw if options.kernel else context.expander.expand(raw)
    if not command.strip():
        raise UsageError(f"no command given to run; for example: {_EXEC_EXAMPLE}")
    if options.projects is not None:
        options.projects = projects_value(options, option_words, context.expander)
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

    The command runs as an async job whose output streams into the cell while it
    runs. Raises ``CommandFailedError`` when the command exits with a non-zero
    code or ends without one (timed out, killed, lost), unless ``--no-raise`` or
    ``raise_on_failure`` is off. With ``--bg`` it returns ``None`` at once and
    stores the running :class:`~cocalc_magics.jobs.Job`. With ``--kernel`` the
    command is code for that kernel instead: see
    :func:`~cocalc_magics.magics.kernel_command.run_kernel`. With ``--projects``
    it runs in many projects: see :mod:`cocalc_magics.magics.fanout_commands`.
    """
    from cocalc_magics.jobs import JobInterrupted
    from cocalc_magics.magics.kernel_command import check_kernel_options, run_kernel

    check_kernel_options(options)
    if options.kernel is not None:
        if options.bg or options.detach or options.projects is not None:
            raise UsageError(
                "--bg, --detach and --projects run bash commands; they cannot be "
                "combined with --kernel"
            )
        return run_kernel(magics, options, command)
    if options.projects is not None:
        run_exec_many(magics, options, command)
        return None
    if options.concurrency is not None:
        raise UsageError("--concurrency works only with --projects")

    request = _build_request(magics, options, command)
    if options.dry_run:
        _show_dry_run(magics, request)
        return None

    job_options = JobOptions(
        background=options.bg,
        detach=options.detach,
        grace_s=tuple(magics.interrupt_grace),
        output_budget=magics.output_budget,
        show=not options.quiet,
    )
    try:
        with reported(magics, "project exec", request.project_id):
            result = run_command(
                magics.session.connection,
                request,
                where=magics.session.where(),
                start_stopped=magics.start_stopped_projects,
                running_projects=magics.session.running_projects,
                job_options=job_options,
            )
    except JobInterrupted as error:
        # The job was stopped; what it printed so far stays reachable.
        _store(magics, options, _result_of(error.job, request, magics))
        raise

    if options.bg:
        _store(magics, options, result.job)
        return None
    variable = _store(magics, options, result)
    if result.running:
        # Ctrl-C with --detach: the job keeps running and a watcher follows it.
        raise JobDetached(result.job_id, variable)
    if result.job is None and not options.quiet:
        show_command_output(result, budget=magics.output_budget, variable=variable)
    elif not options.quiet:
        # The output was streamed while the job ran, cut to the same budget.
        size = len(result.stdout.encode("utf-8", "surrogatepass")) + len(
            result.stderr.encode("utf-8", "surrogatepass")
        )
        show_output_notices(
            result,
            budget=magics.output_budget,
            variable=variable,
            was_cut=size > magics.output_budget,
        )

    if not result.ok:
        if magics.raise_on_failure and not options.no_raise:
            raise CommandFailedError(result, where=magics.session.where())
        if not options.quiet and not _status_line_shown(result, job_options):
            show_notice(_outcome(result))
    return result


def _status_line_shown(result: CommandResult, job_options: JobOptions) -> bool:
    # A job without an exit code that ran past the status delay already ended
    # with its summary on screen (see ForegroundView), so it is not repeated.
    return result.exit_code is None and result.duration_s >= job_options.status_delay_s


def _store(magics: CoCalcMagics, options: argparse.Namespace, value) -> str:
    magics.shell.user_ns[LAST_RESULT_NAME] = value
    if options.out:
        magics.shell.user_ns[options.out] = value
    return options.out or LAST_RESULT_NAME


def _result_of(job, request: ExecRequest, magics: CoCalcMagics) -> CommandResult:
    return CommandResult.from_job(
        job, command=request.command, site=magics.session.where()
    )


def _outcome(result: CommandResult) -> str:
    if result.exit_code is not None:
        return f"exit code {result.exit_code}"
    return result.summary()


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
