"""Async exec jobs: live output, Ctrl-C that stops the remote process, background
jobs, and a local ledger that outlives the kernel.

>>> from cocalc_magics.api import Connection                  # doctest: +SKIP
>>> from cocalc_magics.jobs import run_job                     # doctest: +SKIP
>>> job = run_job(Connection(), "make -j2", background=True)   # doctest: +SKIP
>>> job.wait().exit_code                                        # doctest: +SKIP
0

This package imports neither ipywidgets nor matplotlib at import time; IPython is
imported only to display, and only when running inside it.
"""

from cocalc_magics.jobs.commands import (
    JobReferenceError,
    JobStats,
    JobTable,
    find_job,
    job_stats,
    list_jobs,
    show_job,
)
from cocalc_magics.jobs.follow import (
    BACKGROUND_POLICY,
    FOREGROUND_POLICY,
    JobFollowError,
    PollPolicy,
    follow,
)
from cocalc_magics.jobs.job import FINAL_STATUSES, Job
from cocalc_magics.jobs.ledger import (
    DATA_DIR_VARIABLE,
    JobLedger,
    LedgerEntry,
    default_ledger_path,
)
from cocalc_magics.jobs.runner import (
    BLOCKING_MAX_TIMEOUT_S,
    JobInterrupted,
    JobWatcher,
    active_watchers,
    resume_watching,
    run_job,
    stop_watchers,
    watch,
)
from cocalc_magics.jobs.stopping import DEFAULT_GRACE_S, stop_job

__all__ = [
    "BACKGROUND_POLICY",
    "BLOCKING_MAX_TIMEOUT_S",
    "DATA_DIR_VARIABLE",
    "DEFAULT_GRACE_S",
    "FINAL_STATUSES",
    "FOREGROUND_POLICY",
    "Job",
    "JobFollowError",
    "JobInterrupted",
    "JobLedger",
    "JobReferenceError",
    "JobStats",
    "JobTable",
    "JobWatcher",
    "LedgerEntry",
    "PollPolicy",
    "active_watchers",
    "default_ledger_path",
    "find_job",
    "follow",
    "job_stats",
    "list_jobs",
    "resume_watching",
    "run_job",
    "show_job",
    "stop_job",
    "stop_watchers",
    "watch",
]
