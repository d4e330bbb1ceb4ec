"""``%cocalc`` subcommands that choose the site and check it: connect, local,
config and doctor. None of them ever shows the API key, only its masked form.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments

from cocalc_magics.magics.registry import reported, subcommand
from cocalc_magics.magics.rendering import show_fields, show_notice
from cocalc_magics.magics.session import LOCAL_DIR_VARIABLE

if TYPE_CHECKING:
    from cocalc_magics.magics.core import CoCalcMagics

# Trait names shown by `%cocalc config`, in this order.
_SHOWN_TRAITS = (
    "timeout",
    "start_timeout",
    "output_budget",
    "max_output",
    "raise_on_failure",
    "start_stopped_projects",
    "show_tracebacks",
    "remote_max_stream_bytes",
    "remote_max_output_bytes",
    "remote_max_cell_bytes",
    "remote_max_displays",
    "remote_save_dir",
)


@subcommand(
    "connect",
    summary="choose the CoCalc site, project and API key",
    example="%cocalc connect --host https://cocalc.com --prompt-key",
)
@magic_arguments("cocalc connect")
@argument(
    "--host", help="site URL (default: COCALC_HOST, the config file, cocalc.com)."
)
@argument("--project", metavar="PROJECT_ID", help="default project for the magics.")
@argument(
    "--key-env",
    metavar="VARIABLE",
    help="read the API key from this environment variable.",
)
@argument(
    "--prompt-key",
    action="store_true",
    help="ask for the API key with a hidden prompt (it is never echoed).",
)
@argument(
    "--config-file",
    metavar="PATH",
    help="read settings from this TOML file instead of the default one.",
)
def connect(magics: CoCalcMagics, options):
    """Connect to a CoCalc site; the key comes from the environment or a prompt.

    Without ``--key-env`` or ``--prompt-key`` the key comes from
    ``COCALC_API_KEY`` or the user config file. The key is never a magic argument,
    so it never has to be typed into a cell.
    """
    from cocalc_magics.api import Connection, resolve_settings

    api_key, key_source = _read_key(options)
    sources = {
        "host": "--host" if options.host else "CoCalcMagics.host",
        "project_id": "--project" if options.project else "CoCalcMagics.project",
        "api_key": key_source,
    }
    with reported(magics, "connect"):
        settings = resolve_settings(
            host=options.host or magics.host,
            api_key=api_key,
            project_id=options.project or magics.project,
            config_path=options.config_file,
            explicit_sources=sources,
        )
        magics.session.replace(Connection(settings))

    # Nothing is sent yet: the first command (or doctor) contacts the site.
    lines = [f"Using {settings.host} from now on (not contacted yet)."]
    lines += settings.describe()
    lines.append("Run %cocalc doctor to check the key and the project.")
    show_notice("\n".join(lines))


def _read_key(options) -> tuple[str | None, str]:
    """Return the key that the options name (or None) and a description of its source."""
    if options.prompt_key:
        import getpass

        from IPython.core.error import StdinNotImplementedError

        try:
            key = getpass.getpass("CoCalc API key (hidden): ").strip()
        except StdinNotImplementedError:
            raise UsageError(
                "this frontend cannot ask for input (nbconvert and papermill "
                "cannot); use --key-env VARIABLE or set COCALC_API_KEY instead."
            ) from None
        if not key:
            raise UsageError("no API key was entered; run %cocalc connect again.")
        return key, "--prompt-key"

    if options.key_env:
        key = os.environ.get(options.key_env, "").strip()
        if not key:
            raise UsageError(
                f"environment variable {options.key_env} is not set or empty; set it "
                "before starting Jupyter, or use --prompt-key."
            )
        return key, f"--key-env {options.key_env}"
    return None, "argument"


@subcommand(
    "local",
    summary="use the local CoCalc-compatible server (no account)",
    example="%cocalc local",
)
@magic_arguments("cocalc local")
@argument(
    "--data-dir",
    metavar="DIR",
    help=f"server data directory (default: {LOCAL_DIR_VARIABLE} or the "
    "per-user data directory).",
)
@argument(
    "--stop",
    action="store_true",
    help="stop the local server of that data directory instead.",
)
def local(magics: CoCalcMagics, options):
    """Start or reuse the local CoCalc-compatible server and use it.

    The server runs on this machine (127.0.0.1), outlives the kernel, and is not
    cocalc.com: every message of the magics names it "local server".
    """
    if options.stop:
        return _stop_local(magics, options)

    with reported(magics, "start local server"):
        connection = magics.session.use_local_server(options.data_dir)
    show_notice(
        f"Using the local server at {connection.host} (on this machine, not "
        f"cocalc.com); project {connection.project_id}; data in "
        f"{magics.session.local_data_dir}."
    )
    return None


def _stop_local(magics: CoCalcMagics, options) -> None:
    from cocalc_magics.server import stop_local_server

    data_dir = options.data_dir or magics.local_data_dir
    data_dir = data_dir or os.environ.get(LOCAL_DIR_VARIABLE) or None
    if magics.session.is_local:
        magics.session.close()
    stop_local_server(data_dir)
    show_notice("The local server is stopped.")


@subcommand(
    "config",
    summary="show the site, project, masked key and options",
    example="%cocalc config",
)
@magic_arguments("cocalc config")
def config(magics: CoCalcMagics, options):
    """Show where each setting comes from, and the options of the magics.

    Change options with ``%config CoCalcMagics.<name> = value``.
    """
    with reported(magics, "config"):
        connection = magics.session.connection
    fields = [("site", magics.session.where())]
    for line in connection.settings.describe():
        name, _, value = line.partition(": ")
        fields.append((name, value))
    fields += [(name, getattr(magics, name)) for name in _SHOWN_TRAITS]
    show_fields(fields, title="cocalc_magics configuration")


@subcommand(
    "doctor",
    summary="check the site, key and project, and say what to fix",
    example="%cocalc doctor",
)
@magic_arguments("cocalc doctor")
@argument("--project", metavar="PROJECT_ID", help="project to check.")
def doctor(magics: CoCalcMagics, options):
    """Check the settings, the site, the key's scope and the project, in order.

    Each check prints one line, and a failed check names the fix. The project is
    pinged only when the hub reports it running, so this never starts it.
    """
    from cocalc_magics.magics.doctor import run_checks

    lines = run_checks(magics, options.project)
    show_notice("\n".join(lines))
