"""Configuration traits of the magics, set with ``%config CoCalcMagics.<name>``.

The API key is deliberately not a trait: ``%config CoCalcMagics`` prints every trait
value, and config files are often shared. The key comes from ``COCALC_API_KEY``,
the user config file, or the hidden prompt of ``%cocalc connect --prompt-key``.
"""

from __future__ import annotations

import uuid

from traitlets import Bool, Float, Int, List, TraitError, Unicode, validate
from traitlets.config import Configurable

# The server cuts each of stdout and stderr at this many characters unless
# --max-output sets another cap. A finite cap is always sent: CoCalc's blocking exec
# has none by default and would return every byte a command prints.
DEFAULT_MAX_OUTPUT = 2_000_000


class CoCalcMagicsConfig(Configurable):
    """Options of the ``%cocalc`` and ``%%cocalc_exec`` magics."""

    host = Unicode(
        None,
        allow_none=True,
        help=(
            "CoCalc site URL, e.g. https://cocalc.com. None uses COCALC_HOST, then "
            "the user config file, then https://cocalc.com."
        ),
    ).tag(config=True)

    project = Unicode(
        None,
        allow_none=True,
        help=(
            "Default project id for the magics. None uses COCALC_PROJECT_ID, then "
            "the user config file."
        ),
    ).tag(config=True)

    timeout = Float(
        50.0,
        help=(
            "Default wall-clock limit of a remote command, in seconds, including "
            "the start of a stopped project. Overridden by --timeout."
        ),
    ).tag(config=True)

    start_timeout = Float(
        150.0,
        help="Seconds that %cocalc start and restart wait for the project to run.",
    ).tag(config=True)

    output_budget = Int(
        1_000_000,
        help=(
            "Bytes of stdout plus stderr shown per command; beyond it the middle is "
            "cut from the display (the result object keeps everything)."
        ),
    ).tag(config=True)

    max_output = Int(
        DEFAULT_MAX_OUTPUT,
        help=(
            "Characters of stdout and of stderr, each, that the server returns per "
            "command. Overridden by --max-output."
        ),
    ).tag(config=True)

    raise_on_failure = Bool(
        True,
        help=(
            "Fail the cell when a command exits with a non-zero code, so Run All, "
            "nbconvert and papermill stop. --no-raise overrides it per command."
        ),
    ).tag(config=True)

    start_stopped_projects = Bool(
        True,
        help=(
            "Start a project that is not running before running a command in it. "
            "When False, a command for a project the hub reports as not running "
            "fails without being sent, because any call to the project endpoint "
            "would start it."
        ),
    ).tag(config=True)

    show_tracebacks = Bool(
        False,
        help=(
            "Debug switch: show the full exception chain of a failed CoCalc call "
            "instead of the short message and hint."
        ),
    ).tag(config=True)

    local_data_dir = Unicode(
        None,
        allow_none=True,
        help=(
            "Data directory of the local server used by %cocalc local. None uses "
            "COCALC_MAGICS_LOCAL_DIR, then the default per-user data directory."
        ),
    ).tag(config=True)

    remote_max_stream_bytes = Int(
        1_000_000,
        help=(
            "Bytes of stream text shown per %%cocalc_exec --kernel cell; longer text "
            "shows its head and tail around a notice. 0 means no limit. The "
            "default keeps a cell under Jupyter Server's IOPub data rate limit."
        ),
    ).tag(config=True)

    remote_max_output_bytes = Int(
        5_000_000,
        help=(
            "Bytes of one display output (an image, HTML, ...) of a remote kernel "
            "that are sent to the frontend; a larger one is withheld with a notice "
            "saying where to get it. 0 means no limit."
        ),
    ).tag(config=True)

    remote_max_cell_bytes = Int(
        10_000_000,
        help=(
            "Bytes of all display outputs of one remote kernel cell together; "
            "displays beyond it are withheld with a notice. 0 means no limit."
        ),
    ).tag(config=True)

    remote_max_displays = Int(
        500,
        help=(
            "Display outputs shown per remote kernel cell; further ones are counted "
            "in a notice. 0 means no limit."
        ),
    ).tag(config=True)

    remote_save_dir = Unicode(
        None,
        allow_none=True,
        help=(
            "Local folder where withheld payloads of remote kernel cells are saved, "
            "so the notice can name the file. None keeps them only in the result "
            "object (--out VAR, or _cocalc)."
        ),
    ).tag(config=True)

    interrupt_grace = List(
        Float(),
        [2.0, 3.0, 5.0],
        minlen=3,
        maxlen=3,
        help=(
            "Seconds waited after SIGINT, after SIGTERM and after SIGKILL when "
            "Ctrl-C stops a running command's process group."
        ),
    ).tag(config=True)

    fanout_concurrency = Int(
        10,
        help=("Projects worked on at once by --projects. Overridden by --concurrency."),
    ).tag(config=True)

    fanout_max_rate = Float(
        50.0,
        allow_none=True,
        help=(
            "Requests per second at most that one --projects run sends (long-polls "
            "excluded); None for no limit."
        ),
    ).tag(config=True)

    @validate("project")
    def _validate_project(self, proposal):
        value = proposal["value"]
        if value is None:
            return None
        try:
            return str(uuid.UUID(value.strip()))
        except ValueError:
            raise TraitError(
                f"CoCalcMagics.project must be a project id (a UUID), not {value!r}; "
                "%cocalc projects lists the ids of your projects"
            ) from None

    @validate("interrupt_grace")
    def _validate_grace(self, proposal):
        if any(value < 0 for value in proposal["value"]):
            raise TraitError(
                "interrupt_grace must contain three values of 0 or more seconds"
            )
        return proposal["value"]

    @validate("fanout_concurrency")
    def _validate_concurrency(self, proposal):
        if proposal["value"] < 1:
            raise TraitError("fanout_concurrency must be 1 or more")
        return proposal["value"]

    @validate("fanout_max_rate")
    def _validate_rate(self, proposal):
        if proposal["value"] is not None and not proposal["value"] > 0:
            raise TraitError(
                "fanout_max_rate must be above 0 requests per second, or None"
            )
        return proposal["value"]

    @validate("timeout", "start_timeout")
    def _validate_seconds(self, proposal):
        if proposal["value"] <= 0:
            raise TraitError(f"{proposal['trait'].name} must be above 0 seconds")
        return proposal["value"]

    @validate("output_budget", "max_output")
    def _validate_size(self, proposal):
        if proposal["value"] < 1:
            raise TraitError(f"{proposal['trait'].name} must be 1 or more")
        return proposal["value"]

    @validate(
        "remote_max_stream_bytes",
        "remote_max_output_bytes",
        "remote_max_cell_bytes",
        "remote_max_displays",
    )
    def _validate_limit(self, proposal):
        if proposal["value"] < 0:
            raise TraitError(
                f"{proposal['trait'].name} must be 0 (no limit) or more, "
                f"not {proposal['value']}"
            )
        return proposal["value"]
