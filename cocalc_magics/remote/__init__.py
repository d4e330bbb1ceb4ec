"""Run code on a Jupyter kernel in a CoCalc project and show its outputs locally.

CoCalc's ``system.jupyterExecute`` is stateless: each call starts a fresh kernel,
replays the ``history`` it is sent and returns the output items without their
``output_type``. This package renders those items through IPython's display
system as if the cell had run locally, raises remote errors as real errors, keeps
oversized payloads away from the frontend, and keeps client-side sessions whose
history is replayed on each call.

Main entry points:

- :func:`run_remote_cell` runs a cell and renders it (``%%cocalc_exec --kernel``).
- :func:`find_sessions` and :func:`reset_sessions` show and reset sessions
  (``%cocalc session NAME``).
- :class:`RemoteResult` is the result object, :class:`RemoteKernelError` the
  base class of remote errors.
"""

from .items import NormalizedOutputs, Output, normalize_items
from .render import OutputLimits, WithheldPayload, plan_outputs, publish_steps
from .result import RemoteKernelError, RemoteResult, remote_error_class
from .run import (
    find_sessions,
    last_result,
    render_outputs,
    reset_sessions,
    run_remote_cell,
    session_key,
    session_store,
)
from .sessions import Session, SessionKey, SessionStore, detect_side_effects

__all__ = [
    "NormalizedOutputs",
    "Output",
    "OutputLimits",
    "RemoteKernelError",
    "RemoteResult",
    "Session",
    "SessionKey",
    "SessionStore",
    "WithheldPayload",
    "detect_side_effects",
    "find_sessions",
    "last_result",
    "normalize_items",
    "plan_outputs",
    "publish_steps",
    "remote_error_class",
    "render_outputs",
    "reset_sessions",
    "run_remote_cell",
    "session_key",
    "session_store",
]
