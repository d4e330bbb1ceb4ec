"""``%cocalc jobs`` and ``%cocalc job ID``: the jobs recorded in the job ledger.

The work is done by :mod:`cocalc_magics.jobs`, imported on first use so that
``%load_ext`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display

from cocalc_magics.magics.registry import reported, subcommand

if TYPE_CHECKING:
    from cocalc_magics.magics.core import CoCalcMagics

LAST_RESULT_NAME = "_cocalc"


@subcommand(
    "jobs",
    summary="list the commands run as jobs (newest first), from the job ledger",
    example="%cocalc jobs --limit 10",
)
@magic_arguments("cocalc jobs")
@argument(
    "--all",
    action="store_true",
    help="list the jobs of every site in the ledger, not only the connected one.",
)
@argument(
    "--limit",
    type=int,
    default=20,
    metavar="N",
    help="show at most N jobs (default: 20).",
)
def jobs(magics: CoCalcMagics, options):
    """List recorded jobs; running ones of this site are polled once, then watched.

    The ledger is a local SQLite file (``$COCALC_MAGICS_DATA_DIR/jobs.sqlite3``,
    or the user data directory), so the list survives kernel restarts.
    """
    from cocalc_magics.jobs import list_jobs

    if options.limit < 1:
        raise UsageError(f"--limit must be 1 or more, not {options.limit}")
    with reported(magics, "job list"):
        table = list_jobs(
            magics.session.connection, all_sites=options.all, limit=options.limit
        )
    display(table)


@subcommand(
    "job",
    summary="show one job (--wait for it, --kill it, --stats for CPU and memory)",
    example="%cocalc job 1a2b3c4d --wait",
)
@magic_arguments("cocalc job")
@argument("job_id", metavar="ID", help="a job id, or a unique prefix of one.")
@argument(
    "--wait",
    action="store_true",
    help="stream the job's output until it ends.",
)
@argument(
    "--kill",
    action="store_true",
    help=(
        "stop the job: SIGINT, SIGTERM, then SIGKILL to its process group, each "
        "after CoCalcMagics.interrupt_grace seconds."
    ),
)
@argument(
    "--stats",
    action="store_true",
    help="show the job's CPU % and memory (MiB) over time: a plot with matplotlib, "
    "else a table.",
)
@argument(
    "--out",
    metavar="VAR",
    help="store the job object in this variable too (it is always in _cocalc).",
)
def job(magics: CoCalcMagics, options):
    """Show a job from the ledger (polled once if it runs) and store it in _cocalc."""
    from cocalc_magics.jobs import JobReferenceError, job_stats, show_job

    if options.wait and options.kill:
        raise UsageError("give either --wait or --kill, not both")
    if options.out is not None and not options.out.isidentifier():
        raise UsageError(f"--out {options.out!r} is not a Python variable name")
    try:
        with reported(magics, "job"):
            found = show_job(
                magics.session.connection,
                options.job_id,
                wait=options.wait,
                kill=options.kill,
                grace_s=tuple(magics.interrupt_grace),
            )
    except JobReferenceError as error:
        raise UsageError(str(error)) from None

    magics.shell.user_ns[LAST_RESULT_NAME] = found
    if options.out:
        magics.shell.user_ns[options.out] = found
    if not options.wait:
        display(found)
    if options.stats:
        display(job_stats(found))
