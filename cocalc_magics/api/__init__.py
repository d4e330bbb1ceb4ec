"""A client for CoCalc's HTTP API (the conat bridge), usable from plain Python.

>>> from cocalc_magics.api import Connection       # doctest: +SKIP
>>> cocalc = Connection()                           # doctest: +SKIP
>>> cocalc.exec("echo hi").stdout                   # doctest: +SKIP
'hi\\n'

Settings come from arguments, then ``COCALC_API_KEY`` / ``COCALC_HOST`` /
``COCALC_PROJECT_ID``, then the owner-only user config file; see
:mod:`cocalc_magics.api.settings`. This package imports neither IPython nor
ipywidgets.
"""

from cocalc_magics.api.connection import Connection
from cocalc_magics.api.errors import (
    AuthenticationError,
    BridgeTimeoutError,
    CoCalcError,
    ConfigurationError,
    ConnectionFailedError,
    ExecTimeoutError,
    HTTPStatusError,
    InsecureTransportError,
    InsecureTransportWarning,
    JobNotFoundError,
    NotListeningError,
    PermissionDeniedError,
    ProjectNotRunningError,
    ProtocolError,
    ReadTimeoutError,
    RemoteError,
    RequestTooLargeError,
    TLSVerificationError,
    TransportError,
)
from cocalc_magics.api.execution import DEFAULT_MAX_OUTPUT
from cocalc_magics.api.hub_results import (
    ProjectInfo,
    ProjectQuotas,
    ProjectState,
    ProjectStatus,
)
from cocalc_magics.api.jupyter_results import (
    JupyterResult,
    KernelSpec,
    RunningKernel,
    normalize_outputs,
)
from cocalc_magics.api.results import (
    AsyncJob,
    DirEntry,
    ExecResult,
    KeyScope,
    PingResult,
    StatsSample,
)
from cocalc_magics.api.settings import Settings, resolve_settings
from cocalc_magics.api.transport import MAX_BODY_BYTES

__all__ = [
    "DEFAULT_MAX_OUTPUT",
    "MAX_BODY_BYTES",
    "AsyncJob",
    "AuthenticationError",
    "BridgeTimeoutError",
    "CoCalcError",
    "ConfigurationError",
    "Connection",
    "ConnectionFailedError",
    "DirEntry",
    "ExecResult",
    "ExecTimeoutError",
    "HTTPStatusError",
    "InsecureTransportError",
    "InsecureTransportWarning",
    "JobNotFoundError",
    "JupyterResult",
    "KernelSpec",
    "KeyScope",
    "NotListeningError",
    "PermissionDeniedError",
    "PingResult",
    "ProjectInfo",
    "ProjectNotRunningError",
    "ProjectQuotas",
    "ProjectState",
    "ProjectStatus",
    "ProtocolError",
    "ReadTimeoutError",
    "RemoteError",
    "RequestTooLargeError",
    "RunningKernel",
    "Settings",
    "StatsSample",
    "TLSVerificationError",
    "TransportError",
    "normalize_outputs",
    "resolve_settings",
]
