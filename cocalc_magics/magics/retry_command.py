"""``%cocalc retry``: run a ``--projects`` operation again where it failed."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments

from cocalc_magics.magics.fanout_commands import LAST_RESULT_NAME, raise_on_failures
from cocalc_magics.magics.registry import reported, subcommand

if TYPE_CHECKING:
    from cocalc_magics.magics.core import CoCalcMagics

_RETRY_EXAMPLE = "%cocalc retry results --concurrency 5"


@subcommand(
    "retry",
    summary="run a --projects operation again in the projects where it failed",
    example=_RETRY_EXAMPLE,
)
@magic_arguments("cocalc retry")
@argument(
    "variable",
    nargs="?",
    default=LAST_RESULT_NAME,
    metavar="VAR",
    help="the variable holding the earlier result table (default: _cocalc).",
)
@argument(
    "--concurrency",
    type=int,
    metavar="N",
    help="projects worked on at once (default: CoCalcMagics.fanout_concurrency).",
)
@argument(
    "--no-raise",
    action="store_true",
    help="do not fail the cell when projects fail again.",
)
def retry(magics: CoCalcMagics, options) -> None:
    """Retry the failed and cancelled rows of a result table from ``--projects``.

    The table in VAR (and ``_cocalc``) is replaced by the merged one: every
    project, with the retried rows updated.
    """
    from cocalc_magics.fanout import FanoutInterrupted, FanoutResult, retry_failed

    previous = magics.shell.user_ns.get(options.variable)
    if not isinstance(previous, FanoutResult):
        found = "nothing" if previous is None else type(previous).__name__
        raise UsageError(
            f"{options.variable} contains {found}, not the result table of a --projects "
            f"run; run one first, or name its variable: {_RETRY_EXAMPLE}"
        )
    if options.concurrency is not None and options.concurrency < 1:
        raise UsageError(f"--concurrency must be 1 or more, not {options.concurrency}")
    if not previous.failed().rows:
        print(f"No failed projects in {options.variable}; nothing to retry.")
        return

    keywords = {
        "concurrency": options.concurrency or magics.fanout_concurrency,
        "max_rate": magics.fanout_max_rate,
    }
    retry_options = argparse.Namespace(out=None, no_raise=options.no_raise)
    try:
        with reported(magics, f"retry of {previous.operation.describe()}"):
            newer = retry_failed(previous, **keywords)
    except FanoutInterrupted as error:
        _store_merged(magics, options.variable, previous.merged(error.result))
        raise
    merged = previous.merged(newer)
    _store_merged(magics, options.variable, merged)
    retry_options.out = options.variable
    raise_on_failures(magics, retry_options, merged, retried=len(newer))


def _store_merged(magics: CoCalcMagics, variable: str, merged) -> None:
    magics.shell.user_ns[variable] = merged
    magics.shell.user_ns[LAST_RESULT_NAME] = merged
