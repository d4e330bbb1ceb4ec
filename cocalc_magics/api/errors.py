"""Exceptions raised by the CoCalc API client, and the rules that pick one.

CoCalc reports every application-level failure as HTTP 200 and a body of exactly
one key, ``{"error": "<text>"}``. The text has no error code, so the client sorts it
by the substrings CoCalc is known to use (the bridge's ``code='408'`` marker, the
authentication messages, ``does not exist`` and so on). Failures below CoCalc's code,
such as a refused connection or an HTML page from a proxy, become
:class:`TransportError` subclasses.

Every exception carries the method name, a display message with CoCalc's leading
``Error: `` removed, the raw server string, a hint on what to do next, the HTTP status
(if there was one) and whether repeating the call is safe. None of them ever contains
an API key: the connection scrubs the key out of server text before building one.
"""

from __future__ import annotations

import re
import warnings

__all__ = [
    "AuthenticationError",
    "BridgeTimeoutError",
    "CoCalcError",
    "ConfigurationError",
    "ConnectionFailedError",
    "ExecTimeoutError",
    "HTTPStatusError",
    "InsecureTransportError",
    "InsecureTransportWarning",
    "JobNotFoundError",
    "NotListeningError",
    "PermissionDeniedError",
    "ProjectNotRunningError",
    "ProtocolError",
    "ReadTimeoutError",
    "RemoteError",
    "RequestTooLargeError",
    "TLSVerificationError",
    "TransportError",
    "classify_error_text",
    "display_message",
]


class CoCalcError(Exception):
    """Base class of every error of the CoCalc API client.

    Parameters
    ----------
    method : str
        The API method that failed, for example ``"system.exec"``, or a short
        description of the step (``"settings"``) when no method was called.
    message : str
        Display text. A leading ``"Error: "`` is removed.
    raw : str, optional
        The error string exactly as the server sent it, for matching.
    hint : str, optional
        What the user can do next.
    status : int, optional
        The HTTP status of the response, when there was one.
    project_id : str, optional
        The project the call was addressed to.
    retry_safe : bool
        True when repeating the same call cannot run the work twice.
    """

    default_hint = ""
    #: Seconds the server asked to wait before a retry (HTTP ``Retry-After``).
    retry_after: float | None = None
    #: The async job the failed call was about, if any.
    job_id: str | None = None

    def __init__(
        self,
        method: str,
        message: str,
        *,
        raw: str | None = None,
        hint: str | None = None,
        status: int | None = None,
        project_id: str | None = None,
        retry_safe: bool = False,
    ):
        self.method = method
        self.message = display_message(message)
        self.raw = raw
        self.hint = hint if hint is not None else self.default_hint
        self.status = status
        self.project_id = project_id
        self.retry_safe = retry_safe
        super().__init__(f"{method}: {self.message}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.method!r}, {self.message!r})"


class ConfigurationError(CoCalcError):
    """Missing API key, invalid host or project id, or an unsafe config file.

    Raised before any request is sent.
    """


class InsecureTransportError(ConfigurationError):
    """The API key would travel over plain HTTP to a host that is not loopback."""


class InsecureTransportWarning(UserWarning):
    """Warning given each time a key is sent over plain HTTP on explicit request."""


# Like urllib3 does for its security warnings: show this one every time, not only
# the first time per code location, unless the user configured otherwise.
warnings.simplefilter("always", InsecureTransportWarning, append=True)


class RequestTooLargeError(CoCalcError):
    """The request body is above CoCalc's 1 MB limit.

    Raised before sending (``status`` is None) or when the server returns 413.
    """

    default_hint = (
        "CoCalc accepts request bodies of at most 1 MB (1048576 bytes). Send less "
        "data per call, for example by splitting a file into parts."
    )


class AuthenticationError(CoCalcError):
    """The API key is missing, invalid, expired, or of the wrong kind."""

    default_hint = (
        "Check the API key (COCALC_API_KEY or the config file). Keys can expire or "
        "be deleted. A project-scoped key works only on the project endpoint; hub "
        "methods such as projects.state need an account key."
    )


class PermissionDeniedError(CoCalcError):
    """The key is valid but may not do this (not a collaborator, not an admin)."""


class BridgeTimeoutError(CoCalcError):
    """CoCalc's bridge gave up waiting for the reply (``code='408'``).

    The work is not cancelled: it may still be running.
    """

    default_hint = (
        "The request timed out inside CoCalc, but the work was not cancelled and may "
        "still be running. Use an async exec and poll it for long work, or pass a "
        "longer timeout."
    )


class NotListeningError(CoCalcError):
    """No service listened for the call yet (``code='503'``), typically after a start.

    Repeating the call after a short wait is safe, because nothing received it.
    """

    default_hint = (
        "The project's API service is not listening yet, which is normal for a few "
        "seconds after a start. Retry in a few seconds."
    )


class ProjectNotRunningError(CoCalcError):
    """The project is not running (CoCalc reports ``no host`` or ``not running``)."""

    default_hint = (
        "Start the project (Connection.start_project, or in the CoCalc web UI), then "
        "run the call again."
    )


class JobNotFoundError(CoCalcError):
    """An async exec job id is unknown to the project.

    The project keeps job records in memory only: for one hour after the last access,
    at most 100 of them, and none survive a project restart.
    """

    default_hint = (
        "The project forgets async jobs one hour after their last poll, keeps at most "
        "100, and loses all of them when it restarts. Start the command again if its "
        "result is still needed."
    )

    def __init__(self, method: str, message: str, *, job_id: str | None = None, **kw):
        super().__init__(method, message, **kw)
        self.job_id = job_id


class RemoteError(CoCalcError):
    """Any other error envelope returned by an API method."""


class ExecTimeoutError(RemoteError):
    """``system.exec`` killed the command because its own timeout (seconds) passed."""

    default_hint = (
        "The command ran longer than its timeout and was killed. Pass a larger "
        "timeout (in seconds), or run it as an async job."
    )


class TransportError(CoCalcError):
    """No usable HTTP response arrived."""


class HTTPStatusError(TransportError):
    """The server returned a status other than 200; ``message`` has a text excerpt."""


class ConnectionFailedError(TransportError):
    """The connection was refused, reset or dropped, or the host name is unknown."""


class TLSVerificationError(TransportError):
    """The server's TLS certificate could not be verified."""

    default_hint = (
        "If the server uses a certificate from a private CA, set REQUESTS_CA_BUNDLE "
        "(or SSL_CERT_FILE) to a PEM file containing that CA. Verification is never "
        "turned off."
    )


class ReadTimeoutError(TransportError):
    """The HTTP read timeout passed before a response arrived.

    The request had been sent, so the work may still be running.
    """

    default_hint = (
        "No response arrived in time, but the request was sent and the work may still "
        "be running. Check before starting it again."
    )


class ProtocolError(TransportError):
    """An HTTP 200 response whose body is not valid JSON, or not the expected shape."""


_ERROR_PREFIX = "Error: "
_BRIDGE_CODE = re.compile(r"code='(\d{3})'")
_JOB_ID = re.compile(r"Async operation '([^']*)' does not exist")

_NOT_COLLABORATOR_HINT = (
    "The account that owns this key is not a collaborator on the project. Check the "
    "project id, or ask an owner to add the account."
)

# Ordered (substring, class, hint) rules, checked after the bridge code markers. The
# substrings are CoCalc's own texts; hints of None fall back to the class default.
_RULES: list[tuple[str, type[CoCalcError], str | None]] = [
    (
        "You must provide authentication via an API key",
        AuthenticationError,
        "No API key was sent. Set COCALC_API_KEY or pass api_key.",
    ),
    ("Unknown authorization type", AuthenticationError, None),
    (
        "must be signed in and MUST provide an api key",
        AuthenticationError,
        (
            "The hub rejected the key: it is invalid, expired, or project-scoped. "
            "Project-scoped keys are rejected on the hub endpoint with this same "
            "message; use an account key for hub methods."
        ),
    ),
    (
        "must sign in as project or account",
        AuthenticationError,
        (
            "The project endpoint rejected the key as invalid or expired. Create a new "
            "key in the CoCalc web UI and set COCALC_API_KEY."
        ),
    ),
    (
        "must specify project_id or use project-specific api key",
        RemoteError,
        (
            "This account key needs a project id. Set COCALC_PROJECT_ID or pass "
            "project_id."
        ),
    ),
    (
        "project specific api key must match requested project",
        PermissionDeniedError,
        (
            "This project-scoped key belongs to a different project. Leave out the "
            "project id or use the key's own project."
        ),
    ),
    (
        "not allowed with a project-specific api key",
        PermissionDeniedError,
        (
            "A project-scoped key cannot do this. Start or manage the project in the "
            "CoCalc web UI, or use an account key."
        ),
    ),
    ("must be a collaborator", PermissionDeniedError, _NOT_COLLABORATOR_HINT),
    ("must be collaborator", PermissionDeniedError, _NOT_COLLABORATOR_HINT),
    (
        "Must be an admin",
        PermissionDeniedError,
        "Only site administrators may call this method.",
    ),
    (
        "invalid account_id or project_id",
        RemoteError,
        "The project id or account id is not a valid UUID.",
    ),
    (
        "exited with nonzero code",
        RemoteError,
        (
            "CoCalc turned the non-zero exit into an error because err_on_exit was "
            "true; Connection.exec sends err_on_exit false and returns the exit code."
        ),
    ),
    ("no host", ProjectNotRunningError, None),
    ("project not running", ProjectNotRunningError, None),
    ("project is not running", ProjectNotRunningError, None),
    ("does not exist.", JobNotFoundError, None),
    ("killed command", ExecTimeoutError, None),
    (
        "timeout must be positive",
        RemoteError,
        "The bridge timeout (milliseconds) must be above zero.",
    ),
    (
        "unknown function",
        RemoteError,
        (
            "This server does not offer the method. Check its name, or the server may "
            "run an older CoCalc version."
        ),
    ),
    (
        "Unable to Spawn Jupyter Kernel",
        RemoteError,
        (
            "The kernel could not start. List the installed kernels with "
            "Connection.kernel_specs()."
        ),
    ),
]


def display_message(text: str) -> str:
    """Return *text* without CoCalc's leading ``"Error: "`` and surrounding blanks."""
    text = text.strip()
    text = text.removeprefix(_ERROR_PREFIX)
    return text


def classify_error_text(
    method: str,
    text: str,
    *,
    status: int | None = None,
    project_id: str | None = None,
) -> CoCalcError:
    """Build the exception for the error string *text* of an error envelope.

    Parameters
    ----------
    method : str
        The method that was called.
    text : str
        The value of the envelope's ``error`` field, already free of the API key.
    status : int, optional
        The HTTP status, 200 for ordinary envelopes.
    project_id : str, optional
        The project the call went to.

    Returns
    -------
    CoCalcError
        The most specific subclass that matches; :class:`RemoteError` otherwise.
    """
    common = {"raw": text, "status": status, "project_id": project_id}

    code = _BRIDGE_CODE.search(text)
    if code and code.group(1) == "408":
        return BridgeTimeoutError(method, text, **common)
    if code and code.group(1) == "503":
        return NotListeningError(method, text, retry_safe=True, **common)

    for needle, error_class, hint in _RULES:
        if needle not in text:
            continue
        if error_class is JobNotFoundError:
            job = _JOB_ID.search(text)
            if job is None:
                continue
            return JobNotFoundError(method, text, job_id=job.group(1), **common)
        return error_class(method, text, hint=hint, **common)

    return RemoteError(method, text, **common)
