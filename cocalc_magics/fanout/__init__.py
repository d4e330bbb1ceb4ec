"""Run the same operation in many CoCalc projects at once (a class, a lab, a course).

>>> from cocalc_magics.api import Connection                   # doctest: +SKIP
>>> from cocalc_magics.fanout import exec_many, retry_failed   # doctest: +SKIP
>>> cocalc = Connection()                                      # doctest: +SKIP
>>> result = exec_many(cocalc, "title:Lab 3", "ls lab3/*.ipynb")  # doctest: +SKIP
>>> result.failed()                                            # doctest: +SKIP
>>> again = retry_failed(result)                               # doctest: +SKIP

Projects are named by ids, project objects, a file of ids (``@students.txt``) or a
title search (``title:Lab 3``); see :func:`resolve_projects`. At most
``concurrency`` projects (default 10) are worked on at once by a fixed pool of
threads, stopped projects are started first, and requests are rate-limited with
back-off when the site answers 503 or cannot be reached. A status grid shows one row
per project while the work runs. Ctrl-C cancels what is queued and interrupts what
runs, and the :class:`FanoutInterrupted` it raises names any job left running.

This package imports neither IPython nor ipywidgets until a grid is shown.
"""

from cocalc_magics.fanout.commands import (
    exec_many,
    retry_failed,
    start_many,
    status_many,
    stop_many,
)
from cocalc_magics.fanout.grid import StatusView, choose_view
from cocalc_magics.fanout.pacing import Pacer
from cocalc_magics.fanout.plan import FanoutPlan, plan_fanout
from cocalc_magics.fanout.results import FanoutResult, Operation, ProjectRun
from cocalc_magics.fanout.runner import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_RATE,
    FanoutInterrupted,
    FanoutRunner,
    run_fanout,
)
from cocalc_magics.fanout.targets import (
    ProjectsOptionError,
    ProjectTarget,
    parse_projects_option,
    read_project_file,
    resolve_projects,
)

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_RATE",
    "FanoutInterrupted",
    "FanoutPlan",
    "FanoutResult",
    "FanoutRunner",
    "Operation",
    "Pacer",
    "ProjectRun",
    "ProjectTarget",
    "ProjectsOptionError",
    "StatusView",
    "choose_view",
    "exec_many",
    "parse_projects_option",
    "plan_fanout",
    "read_project_file",
    "resolve_projects",
    "retry_failed",
    "run_fanout",
    "start_many",
    "status_many",
    "stop_many",
]
