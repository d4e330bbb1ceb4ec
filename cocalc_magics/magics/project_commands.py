"""``%cocalc`` subcommands that look at or manage a project, and ``call``."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments

from cocalc_magics.magics.arguments import parse_words
from cocalc_magics.magics.errors import CoCalcMagicError
from cocalc_magics.magics.execution import start_project
from cocalc_magics.magics.fanout_commands import (
    fanout_project_options,
    require_projects,
    run_project_many,
)
from cocalc_magics.magics.registry import LineContext, reported, subcommand
from cocalc_magics.magics.rendering import show_fields, show_notice, show_table

if TYPE_CHECKING:
    from cocalc_magics.magics.core import CoCalcMagics

_PROJECT_OPTION = argument(
    "--project",
    metavar="PROJECT_ID",
    help="project to address (default: the connected project).",
)

# Name prefixes of methods served by a project. Any other method goes to the hub
# unless --hub or --project-endpoint chooses the endpoint.
_PROJECT_METHOD_PREFIXES = ("system.", "editor.")


@subcommand(
    "ping",
    summary="check that the project (or the hub) answers",
    example="%cocalc ping",
)
@magic_arguments("cocalc ping")
@_PROJECT_OPTION
@argument("--hub", action="store_true", help="ping the hub instead of the project.")
def ping(magics: CoCalcMagics, options):
    """Ping the project (this starts a stopped project) or the hub."""
    where = magics.session.where()
    if options.hub:
        with reported(magics, "hub ping"):
            result = magics.session.connection.hub_ping()
        show_notice(f"Hub of {where} answered in {result.round_trip_s * 1000:.1f} ms.")
        return

    with reported(magics, "project ping", options.project):
        project_id = magics.session.project_id(options.project)
        result = magics.session.connection.ping(project_id=project_id)
    show_notice(
        f"Project {project_id} on {where} answered in "
        f"{result.round_trip_s * 1000:.1f} ms."
    )
    return


@subcommand(
    "status",
    summary="show the project's state without starting it",
    example="%cocalc status",
)
@magic_arguments("cocalc status")
@_PROJECT_OPTION
@fanout_project_options(dry_run=False)
def status(magics: CoCalcMagics, options):
    """Show the state and status of the project through hub calls only.

    Unlike any project call, this does not start a stopped project. With
    ``--projects`` it shows one row per project instead.
    """
    if getattr(options, "projects", None) is not None:
        return run_project_many(magics, "status", options)
    require_projects(options, "status")
    with reported(magics, "project status", options.project):
        project_id = magics.session.project_id(options.project)
        state = magics.session.connection.project_state(project_id=project_id)
        details = magics.session.connection.project_status(project_id=project_id)

    fields = [("state", state.state or "unknown"), ("since", state.time or "")]
    if state.error:
        fields.append(("error", state.error))
    fields += sorted(_flatten(details.raw).items())
    show_fields(fields, title=f"Project {project_id} on {magics.session.where()}")


@subcommand(
    "start",
    summary="start the project and wait until it answers",
    example="%cocalc start",
)
@magic_arguments("cocalc start")
@_PROJECT_OPTION
@argument(
    "--timeout",
    type=float,
    metavar="SECONDS",
    help="seconds to wait (default: CoCalcMagics.start_timeout).",
)
@fanout_project_options(dry_run=True)
def start(magics: CoCalcMagics, options):
    """Start the project (with ``--projects``: each) and wait until it responds."""
    if getattr(options, "projects", None) is not None:
        return run_project_many(magics, "start", options)
    require_projects(options, "start")
    timeout = options.timeout or magics.start_timeout
    with reported(magics, "project start", options.project):
        project_id = magics.session.project_id(options.project)
        start_project(
            magics.session.connection,
            project_id,
            deadline=time.monotonic() + timeout,
            where=magics.session.where(),
        )
    magics.session.running_projects.add(project_id)


@subcommand("stop", summary="stop the project", example="%cocalc stop")
@magic_arguments("cocalc stop")
@_PROJECT_OPTION
@fanout_project_options(dry_run=True)
def stop(magics: CoCalcMagics, options):
    """Stop the project (with ``--projects``: each); its commands and kernels end."""
    if getattr(options, "projects", None) is not None:
        return run_project_many(magics, "stop", options)
    require_projects(options, "stop")
    with reported(magics, "project stop", options.project):
        project_id = magics.session.project_id(options.project)
        magics.session.connection.stop_project(project_id=project_id)
    magics.session.running_projects.discard(project_id)
    show_notice(f"Project {project_id} on {magics.session.where()} stopped.")


@subcommand(
    "restart", summary="stop, then start the project", example="%cocalc restart"
)
@magic_arguments("cocalc restart")
@_PROJECT_OPTION
@argument(
    "--timeout",
    type=float,
    metavar="SECONDS",
    help="seconds to wait for the start (default: CoCalcMagics.start_timeout).",
)
def restart(magics: CoCalcMagics, options):
    """Restart the project: CoCalc has no restart method, so stop then start."""
    stop(magics, options)
    return start(magics, options)


@subcommand(
    "quotas",
    summary="show the project's quotas and current run quota",
    example="%cocalc quotas",
)
@magic_arguments("cocalc quotas")
@_PROJECT_OPTION
def quotas(magics: CoCalcMagics, options):
    """Show the base quota settings and the quota the project runs with now."""
    with reported(magics, "project quotas", options.project):
        project_id = magics.session.project_id(options.project)
        result = magics.session.connection.project_quotas(project_id=project_id)

    where = magics.session.where()
    show_fields(
        sorted(_flatten(result.settings or {}).items()),
        title=f"Quota settings of project {project_id} on {where}",
    )
    show_fields(
        sorted(_flatten(result.run_quota or {}).items()),
        title="Run quota (what the running project has; stale while stopped)",
    )


@subcommand(
    "projects",
    summary="list the account's projects",
    example="%cocalc projects --title thesis",
)
@magic_arguments("cocalc projects")
@argument("--title", help="show only projects whose title contains this text.")
def projects(magics: CoCalcMagics, options):
    """List the projects of the account that owns the API key."""
    with reported(magics, "list projects"):
        found = magics.session.connection.projects(title=options.title)
    rows = [(p.project_id, p.title or "", p.state or "") for p in found]
    show_table(
        rows,
        ("project_id", "title", "state"),
        title=f"Projects on {magics.session.where()}",
    )


@subcommand(
    "kernels",
    summary="list the project's Jupyter kernels, installed and running; stop one",
    example="%cocalc kernels --stop 4242",
)
@magic_arguments("cocalc kernels")
@_PROJECT_OPTION
@argument(
    "--running",
    action="store_true",
    help="list only the running kernels.",
)
@argument(
    "--stop",
    type=int,
    metavar="PID",
    help="stop the running kernel with this process id (see the pid column).",
)
def kernels(magics: CoCalcMagics, options):
    """List the kernel specs and running kernels of the project, or stop one.

    Kernels run by ``--kernel`` are single-use: a running one is either busy with
    a call or a spare kernel started ahead of the next call.
    """
    if options.stop is not None:
        return _stop_kernel(magics, options)

    with reported(magics, "list kernels", options.project):
        project_id = magics.session.project_id(options.project)
        connection = magics.session.connection
        specs = (
            [] if options.running else connection.kernel_specs(project_id=project_id)
        )
        running = connection.running_kernels(project_id=project_id)

    if not options.running:
        show_table(
            [(k.name, k.display_name, k.language) for k in specs],
            ("name", "display name", "language"),
            title=f"Kernels installed in project {project_id}",
        )
    show_table(
        [(k.pid, k.kernel_name, k.connection_file) for k in running],
        ("pid", "kernel", "connection file"),
        title=f"Kernels running in project {project_id}",
    )


def _stop_kernel(magics: CoCalcMagics, options) -> None:
    with reported(magics, "stop kernel", options.project):
        project_id = magics.session.project_id(options.project)
        stopped = magics.session.connection.stop_kernel(
            options.stop, project_id=project_id
        )
    if not stopped:
        raise CoCalcMagicError(
            "stop kernel",
            f"no running kernel with pid {options.stop} was started by the project",
            hint="list the running kernels with %cocalc kernels --running.",
            project_id=project_id,
            where=magics.session.where(),
        )
    show_notice(f"Kernel {options.stop} of project {project_id} stopped.")


@subcommand("ls", summary="list a directory of the project", example="%cocalc ls work")
@magic_arguments("cocalc ls")
@_PROJECT_OPTION
@argument("--hidden", action="store_true", help="include names starting with '.'.")
@argument("path", nargs="?", default="", help="directory, relative to the home.")
def ls(magics: CoCalcMagics, options):
    """List a directory of the project."""
    with reported(magics, "list directory", options.project):
        project_id = magics.session.project_id(options.project)
        entries = magics.session.connection.listing(
            options.path, hidden=options.hidden, project_id=project_id
        )
    rows = [
        (
            entry.name + ("/" if entry.is_dir else ""),
            "" if entry.is_dir else entry.size,
            _format_time(entry.mtime_s),
        )
        for entry in entries
    ]
    show_table(
        rows,
        ("name", "size", "modified (UTC)"),
        title=f"{options.path or '~'} in project {project_id}",
    )


@subcommand(
    "call",
    summary="call any hub or project API method with JSON args",
    example="%cocalc call system.version '[]'",
    raw_words=True,
)
@magic_arguments("cocalc call")
@argument(
    "--hub",
    dest="endpoint",
    action="store_const",
    const="hub",
    help="call the hub endpoint.",
)
@argument(
    "--project-endpoint",
    dest="endpoint",
    action="store_const",
    const="project",
    help="call the project endpoint.",
)
@argument(
    "--project",
    metavar="PROJECT_ID",
    help="project for project methods (default: the connected project).",
)
@argument(
    "--timeout",
    type=float,
    default=15.0,
    metavar="SECONDS",
    help="seconds the server may take to reply (default 15).",
)
@argument("name", help="method name, e.g. projects.state or system.listing.")
@argument(
    "args",
    nargs="?",
    default="[]",
    help="JSON array of arguments, or one JSON object (sent as [object]); "
    "sent as typed, without {expression} expansion.",
)
def call(magics: CoCalcMagics, context: LineContext):
    """Call an API method and return its decoded JSON result.

    Methods named ``system.*`` or ``editor.*`` go to the project endpoint, others
    to the hub, unless ``--hub`` or ``--project-endpoint`` chooses. JSON is full
    of braces, so the JSON argument is the one place where ``{expression}`` is
    not expanded; the method name and ``--project`` are.
    """
    words = [word.text for word in context.words[1:]]
    try:
        options = parse_words(call, words, usage_example=call.example)
    except UsageError as error:
        if "unrecognized arguments" in str(error) and any(
            "{" in word or "[" in word for word in words
        ):
            # The shell rules split unquoted JSON at its spaces and drop its quotes.
            raise UsageError(
                "the JSON arguments must be one word: put them in single quotes, "
                """for example: %cocalc call system.listing '[{"path": ""}]'"""
            ) from None
        raise
    if options is None:
        return None
    options.name = context.expander.expand(options.name)
    if options.project:
        options.project = context.expander.expand(options.project)

    args = _parse_json_args(options.args)
    endpoint = options.endpoint or _endpoint_for(options.name)
    timeout_ms = int(options.timeout * 1000)
    connection = magics.session.connection

    with reported(magics, f"{endpoint} call {options.name}", options.project):
        if endpoint == "hub":
            return connection.hub_call(options.name, args, timeout_ms=timeout_ms)
        project_id = magics.session.project_id(options.project)
        return connection.project_call(
            options.name, args, project_id=project_id, timeout_ms=timeout_ms
        )


def _parse_json_args(text: str) -> list:
    try:
        args = json.loads(text)
    except json.JSONDecodeError as error:
        advice = (
            "write single braces: %cocalc call sends its JSON as typed, without "
            "{expression} expansion"
            if "{{" in text
            else "quote them, for example: "
            """%cocalc call system.listing '[{"path": ""}]'"""
        )
        raise UsageError(
            f"the arguments {text!r} are not valid JSON ({error.msg}); {advice}"
        ) from None
    if isinstance(args, dict):
        return [args]
    if not isinstance(args, list):
        raise UsageError(
            f"the arguments must be a JSON array or object, not {type(args).__name__}"
        )
    return args


def _endpoint_for(name: str) -> str:
    return "project" if name.startswith(_PROJECT_METHOD_PREFIXES) else "hub"


def _flatten(mapping: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts into dotted keys, for a two-column display."""
    if not isinstance(mapping, dict):
        return {prefix or "value": mapping}

    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _format_time(seconds: float | None) -> str:
    if not seconds:
        return ""
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")
