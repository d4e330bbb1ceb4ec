"""``%cocalc panel``: the project dashboard, or one of its parts, from a magic.

Importing this module registers the subcommand with the magics' table, so the
magics enable it with one import. It imports the panels (and through them the
client) only when a panel is shown, so that ``%load_ext`` stays light. Where widgets cannot run (terminal IPython, no
ipywidgets) the same command shows a text or HTML summary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments

from cocalc_magics.magics.registry import reported, subcommand
from cocalc_magics.panels.kinds import PANEL_KINDS

if TYPE_CHECKING:
    from cocalc_magics.magics.core import CoCalcMagics

__all__ = ["panel"]


@subcommand(
    "panel",
    summary="show a live dashboard: state, quotas, kernels and jobs",
    example="%cocalc panel jobs --interval 2",
)
@magic_arguments("cocalc panel")
@argument(
    "kind",
    nargs="?",
    default="project",
    choices=list(PANEL_KINDS),
    help="what to show: the whole project dashboard (default) or one part.",
)
@argument(
    "--project",
    metavar="PROJECT_ID",
    help="project to show (default: the connected project).",
)
@argument(
    "--interval",
    type=float,
    default=5.0,
    metavar="SECONDS",
    help="seconds between refreshes (default: 5; 0 turns refreshing off).",
)
def panel(magics: CoCalcMagics, options):
    """Show a panel that refreshes itself in the background until closed.

    The panel reads the project through hub calls only, so it never starts a
    stopped project. Only its Start and Restart buttons start the project.
    """
    from cocalc_magics.panels.base import check_refresh_interval
    from cocalc_magics.panels.display import show_panel

    # Checked here too, because the text view outside a widget frontend does
    # not refresh and would accept any value silently.
    try:
        check_refresh_interval(options.interval)
    except ValueError:
        raise UsageError(
            f"--interval must be at least 0.1 seconds, or 0 to turn refreshing off, "
            f"not {options.interval:g}; for example %cocalc panel --interval 10"
        ) from None

    with reported(magics, "panel", options.project):
        project_id = magics.session.project_id(options.project)
        show_panel(
            magics.session.connection,
            options.kind,
            project_id=project_id,
            refresh_interval=options.interval or None,
        )
