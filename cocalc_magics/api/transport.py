"""The HTTP side of a connection: request bodies, timeouts, retries, error envelopes.

Every call is ``POST {site}/api/conat/hub`` or ``POST {site}/api/conat/project`` with a
JSON body ``{"name", "args", "timeout"}`` (plus ``project_id`` and
``compute_server_id`` for project calls), where ``timeout`` is the bridge timeout in
milliseconds. Every application outcome comes back as HTTP 200; failures are a body
with the single key ``error``.

Timeouts. The HTTP read timeout is the bridge timeout plus a margin. Project calls
get the cold-start margin (150 s by default), because the bridge first starts a
stopped project and that wait does not count against the bridge timeout. Hub calls
get a smaller fixed margin. The connect timeout is short.

Retries. Only calls marked idempotent are repeated, with doubling back-off, and only
after an HTTP 503, a bridge ``code='503'`` ("not listening yet") reply, or a
connection failure. Calls that start work, such as an exec, are never repeated.

Security. The key travels only in the ``Authorization`` header, set by an auth
object whose ``repr`` masks it. It is never put in the URL or the body, and it is
scrubbed from any server text placed in an exception. Plain ``http://`` is rejected
for hosts other than loopback unless ``allow_insecure_http`` is set. TLS
verification stays on. ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``, proxies and
``NO_PROXY`` come from the environment through ``requests``. ``SSL_CERT_FILE`` is
used when neither CA bundle variable is set. Redirects are not followed, so the key
goes to no host other than the configured one.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import math
import os
import time
import warnings
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.auth

from cocalc_magics import __version__
from cocalc_magics.api.errors import (
    CoCalcError,
    ConfigurationError,
    ConnectionFailedError,
    HTTPStatusError,
    InsecureTransportError,
    InsecureTransportWarning,
    NotListeningError,
    ProtocolError,
    RequestTooLargeError,
    classify_error_text,
)
from cocalc_magics.api.http_errors import (
    is_error_envelope,
    text_excerpt,
    translate_request_exception,
    translate_status,
)
from cocalc_magics.api.http_session import EnvironmentCachedSession
from cocalc_magics.api.settings import (
    Settings,
    mask_key,
    normalize_project_id,
    resolve_settings,
)

__all__ = [
    "DEFAULT_BRIDGE_TIMEOUT_MS",
    "HUB_READ_MARGIN_S",
    "MAX_BODY_BYTES",
    "BaseConnection",
]

logger = logging.getLogger(__name__)

DEFAULT_BRIDGE_TIMEOUT_MS = 15_000
# Next.js, which serves CoCalc's API routes, rejects bodies above "1mb" with 413.
MAX_BODY_BYTES = 1024 * 1024
HUB_READ_MARGIN_S = 30.0
_MAX_RETRY_AFTER_S = 10.0
_JSON_HEADERS = {"Content-Type": "application/json"}
_ENDPOINTS = ("hub", "project")


class _BearerAuth(requests.auth.AuthBase):
    """Sets ``Authorization: Bearer <key>``; its ``repr`` shows only the masked key.

    Passing an auth object (rather than a header) also stops ``requests`` from
    replacing the header with credentials from a ``.netrc`` file.

    NOTE: with ``http.client.HTTPConnection.debuglevel`` above 0, the standard
    library prints raw request headers, key included, to stdout; nothing here can
    mask that output. urllib3's logging does not include headers.
    """

    __slots__ = ("_key",)

    def __init__(self, api_key: str):
        self._key = api_key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = _MaskedHeader(f"Bearer {self._key}")
        return request

    def __repr__(self) -> str:
        return f"<BearerAuth {mask_key(self._key)}>"


class _MaskedHeader(str):
    """A header value whose ``repr`` shows only the masked key.

    The value itself is sent unchanged. The repr matters because tracebacks with
    local variables (IPython's ``%xmode Verbose``, ``capture_locals=True``) print
    the header dictionaries held by the frames of requests and urllib3, for
    example when Ctrl-C interrupts a request.

    NOTE: http.client turns the value into plain bytes while it writes the
    request; an interrupt at that instant can still show it in a verbose
    traceback.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        scheme, _, key = str.__str__(self).partition(" ")
        return repr(f"{scheme} {mask_key(key)}")


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


# Per-request proxies that override the environment's for http:// URLs.
_NO_PROXIES = {"http": None, "all": None}


def _is_plain_loopback(host: str) -> bool:
    parts = urlsplit(host)
    return parts.scheme == "http" and _is_loopback(parts.hostname or "")


@functools.lru_cache(maxsize=64)
def _is_protected(host: str) -> bool:
    """Return whether a key sent to *host* is safe on the wire: https or loopback."""
    parts = urlsplit(host)
    return parts.scheme == "https" or _is_loopback(parts.hostname or "")


def _check_timeout_ms(timeout_ms: Any, name: str) -> int:
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, (int, float)):
        raise TypeError(f"{name}: timeout_ms must be a number of milliseconds")
    if not timeout_ms > 0 or math.isinf(timeout_ms):
        raise ValueError(
            f"{name}: timeout_ms must be a positive number of milliseconds, "
            f"got {timeout_ms!r}"
        )
    return int(math.ceil(timeout_ms))


def _encode_body(body: dict, name: str) -> bytes:
    try:
        text = json.dumps(body, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name}: the arguments cannot be sent as JSON: {exc}"
        ) from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (from undecodable file names) have no UTF-8 form; JSON's
        # \\u escapes carry them, as JavaScript strings allow them.
        return json.dumps(body, allow_nan=False).encode("ascii")


class BaseConnection:
    """Session, settings and the two raw calls; see :class:`Connection`."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        host: str | None = None,
        api_key: str | None = None,
        project_id: str | None = None,
        allow_insecure_http: bool = False,
        connect_timeout: float = 5.0,
        cold_start_margin: float = 150.0,
        label: str | None = None,
        max_retries: int = 2,
        retry_backoff: float = 0.5,
    ):
        if settings is None:
            settings = resolve_settings(host, api_key, project_id)
        else:
            settings = settings.with_overrides(
                host=host, api_key=api_key, project_id=project_id
            )
        self.settings = settings
        self.label = label
        self.allow_insecure_http = allow_insecure_http
        self.connect_timeout = float(connect_timeout)
        self.cold_start_margin = float(cold_start_margin)
        self.max_retries = int(max_retries)
        self.retry_backoff = float(retry_backoff)

        self._auth = _BearerAuth(settings.api_key) if settings.api_key else None
        self._urls = {name: f"{settings.host}/api/conat/{name}" for name in _ENDPOINTS}
        self._paths = {name: urlsplit(url).path for name, url in self._urls.items()}
        self._session = EnvironmentCachedSession()
        # A proxy from the environment would carry the key in clear text off this
        # machine, so plain-HTTP loopback sites are always reached directly.
        self._proxies = _NO_PROXIES if _is_plain_loopback(settings.host) else None
        self._session.headers["User-Agent"] = (
            f"cocalc-magics/{__version__} {requests.utils.default_user_agent()}"
        )
        self._session.headers["Accept"] = "application/json"

    # Public attributes and lifetime.

    @property
    def host(self) -> str:
        """Site URL, possibly with a base path, without a trailing slash."""
        return self.settings.host

    @property
    def project_id(self) -> str | None:
        """Default project of project calls."""
        return self.settings.project_id

    def _target(self, project_id: str | None) -> str | None:
        """Return the project a project call goes to, or None if there is none."""
        if not project_id or project_id == self.project_id:
            return self.project_id
        return normalize_project_id(project_id)

    def copy(self, settings: Settings | None = None):
        """Return a new connection with the same options and its own HTTP session.

        *settings* replaces the current ones (another project, say).
        """
        return type(self)(
            settings or self.settings,
            allow_insecure_http=self.allow_insecure_http,
            connect_timeout=self.connect_timeout,
            cold_start_margin=self.cold_start_margin,
            label=self.label,
            max_retries=self.max_retries,
            retry_backoff=self.retry_backoff,
        )

    def close(self) -> None:
        """Close the pooled HTTP connections."""
        self._session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        label = f" {self.label!r}" if self.label else ""
        return (
            f"<{type(self).__name__}{label} host={self.host!r} "
            f"project_id={self.project_id!r} key={self.settings.masked_key!r}>"
        )

    # Raw calls.

    def hub_call(
        self,
        name: str,
        args: list | None = None,
        *,
        timeout_ms: float = DEFAULT_BRIDGE_TIMEOUT_MS,
        idempotent: bool = False,
    ) -> Any:
        """Call hub method *name* and return its decoded result.

        Parameters
        ----------
        name : str
            Method name such as ``"projects.state"``.
        args : list, optional
            Positional arguments; most methods take one object.
        timeout_ms : float
            Bridge timeout in milliseconds.
        idempotent : bool
            Whether the call may be repeated after a 503 or a connection failure.

        Raises
        ------
        CoCalcError
            A subclass naming the failure; see :mod:`cocalc_magics.api.errors`.
        """
        body = self._build_body("hub", name, args, timeout_ms=timeout_ms)
        read_timeout = body["timeout"] / 1000 + HUB_READ_MARGIN_S
        return self._send("hub", name, body, None, idempotent, read_timeout)

    def project_call(
        self,
        name: str,
        args: list | None = None,
        *,
        project_id: str | None = None,
        compute_server_id: int = 0,
        timeout_ms: float = DEFAULT_BRIDGE_TIMEOUT_MS,
        idempotent: bool = False,
    ) -> Any:
        """Call project method *name* and return its decoded result.

        ``project_id`` defaults to the connection's project; when neither is set
        the field is left out, which CoCalc accepts from project-scoped keys only.
        Any call starts a stopped project first, which the HTTP read timeout allows
        for with ``cold_start_margin`` seconds. Other parameters are as for
        :meth:`hub_call`.
        """
        body = self._build_body(
            "project",
            name,
            args,
            timeout_ms=timeout_ms,
            project_id=project_id,
            compute_server_id=compute_server_id,
        )
        read_timeout = body["timeout"] / 1000 + self.cold_start_margin
        target = body.get("project_id")
        return self._send("project", name, body, target, idempotent, read_timeout)

    def describe_request(
        self,
        endpoint: str,
        name: str,
        args: list | None,
        *,
        project_id: str | None = None,
        compute_server_id: int = 0,
        timeout_ms: float = DEFAULT_BRIDGE_TIMEOUT_MS,
    ) -> dict:
        """Return the request a call would send, with the key masked, for dry runs."""
        body = self._build_body(
            endpoint,
            name,
            args,
            timeout_ms=timeout_ms,
            project_id=project_id,
            compute_server_id=compute_server_id,
        )
        margin = HUB_READ_MARGIN_S if endpoint == "hub" else self.cold_start_margin
        headers = dict(self._session.headers)
        headers.update(_JSON_HEADERS)
        headers["Authorization"] = f"Bearer {self.settings.masked_key or '(missing)'}"
        return {
            "method": "POST",
            "url": self._urls[endpoint],
            "headers": headers,
            "json": body,
            "timeout_s": {
                "connect": self.connect_timeout,
                "read": body["timeout"] / 1000 + margin,
            },
        }

    # Request building.

    def _build_body(
        self,
        endpoint: str,
        name: str,
        args: list | None,
        *,
        timeout_ms: float,
        project_id: str | None = None,
        compute_server_id: int = 0,
    ) -> dict:
        if endpoint not in _ENDPOINTS:
            raise ValueError(f"endpoint must be 'hub' or 'project', not {endpoint!r}")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(
                f"the method name must be a non-empty string, not {name!r}"
            )
        if args is None:
            args = []
        elif isinstance(args, tuple):
            args = list(args)
        elif not isinstance(args, list):
            raise TypeError(
                f"{name}: args must be a list of positional arguments, "
                f"not {type(args).__name__}"
            )

        body: dict[str, Any] = {
            "name": name,
            "args": args,
            "timeout": _check_timeout_ms(timeout_ms, name),
        }
        if endpoint == "project":
            target = self._target(project_id)
            if target is not None:
                body["project_id"] = target
            body["compute_server_id"] = self._check_compute_server(compute_server_id)
        return body

    @staticmethod
    def _check_compute_server(compute_server_id: Any) -> int:
        if isinstance(compute_server_id, bool) or not isinstance(
            compute_server_id, int
        ):
            raise TypeError(
                "compute_server_id must be an integer (0 for the project itself), "
                f"not {compute_server_id!r}"
            )
        if compute_server_id < 0:
            raise ValueError(f"compute_server_id must be >= 0, not {compute_server_id}")
        return compute_server_id

    # Sending.

    def _send(
        self,
        endpoint: str,
        name: str,
        body: dict,
        project_id: str | None,
        idempotent: bool,
        read_timeout: float,
    ) -> Any:
        self._check_ready(name)
        payload = _encode_body(body, name)
        if len(payload) > MAX_BODY_BYTES:
            raise RequestTooLargeError(
                name,
                f"the request body is {len(payload)} bytes, above CoCalc's limit of "
                f"{MAX_BODY_BYTES} bytes (1 MB); it was not sent",
                project_id=project_id,
            )

        attempt = 0
        while True:
            try:
                return self._send_once(
                    endpoint, name, payload, project_id, idempotent, read_timeout
                )
            except CoCalcError as error:
                if not (idempotent and _is_retryable(error)):
                    raise
                if attempt >= self.max_retries:
                    raise
                delay = self._retry_delay(attempt, error)
                attempt += 1
                logger.warning(
                    "%s failed (%s); retry %d of %d in %.1f s",
                    name,
                    error.message,
                    attempt,
                    self.max_retries,
                    delay,
                )
                time.sleep(delay)

    def _retry_delay(self, attempt: int, error: CoCalcError) -> float:
        delay = self.retry_backoff * (2**attempt)
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            delay = max(delay, min(retry_after, _MAX_RETRY_AFTER_S))
        return delay

    def _send_once(
        self,
        endpoint: str,
        name: str,
        payload: bytes,
        project_id: str | None,
        idempotent: bool,
        read_timeout: float,
    ) -> Any:
        url = self._urls[endpoint]
        started = time.perf_counter()
        try:
            response = self._session.post(
                url,
                data=payload,
                headers=_JSON_HEADERS,
                auth=self._auth,
                timeout=(self.connect_timeout, read_timeout),
                allow_redirects=False,
                verify=_ca_bundle(),
                # A copy, because requests adds the environment's proxies to it.
                proxies=dict(self._proxies) if self._proxies else None,
            )
        except requests.RequestException as exc:
            # "from None": a chained requests exception would carry the prepared
            # request, and verbose tracebacks print frame locals such as headers.
            raise translate_request_exception(
                exc,
                name,
                url=url,
                project_id=project_id,
                idempotent=idempotent,
                read_timeout_s=read_timeout,
                connect_timeout_s=self.connect_timeout,
            ) from None

        if logger.isEnabledFor(logging.INFO):
            elapsed = time.perf_counter() - started
            path = self._paths[endpoint]
            status = response.status_code
            logger.info("POST %s %s -> %d in %.3f s", path, name, status, elapsed)
        return self._decode(response, name, project_id)

    def _decode(self, response: requests.Response, name: str, project_id) -> Any:
        if response.status_code != 200:
            error = translate_status(
                response, name, project_id=project_id, scrub=self._scrub
            )
            error.retry_after = _retry_after(response)
            raise error

        try:
            value = json.loads(response.content)
        except ValueError:
            excerpt = text_excerpt(
                response.content, response.headers.get("Content-Type", "")
            )
            raise ProtocolError(
                name,
                f"the response is not valid JSON: {self._scrub(excerpt)}",
                hint="The response may have been cut off, or the host URL may point at "
                "something other than a CoCalc server.",
                status=200,
                project_id=project_id,
            ) from None

        if is_error_envelope(value):
            raise classify_error_text(
                name, self._scrub(value["error"]), status=200, project_id=project_id
            )
        return value

    # Checks.

    def _check_ready(self, name: str) -> None:
        if self._auth is None:
            lines = "; ".join(self.settings.describe())
            raise ConfigurationError(
                name,
                "no API key is configured; no request was sent",
                hint=f"Set COCALC_API_KEY or pass api_key. Current settings: {lines}",
            )

        if _is_protected(self.host):
            return
        parts = urlsplit(self.host)
        if not self.allow_insecure_http:
            raise InsecureTransportError(
                name,
                f"refusing to send the API key over plain HTTP to {parts.hostname}",
                hint="Use an https:// host. If this network is trusted, pass "
                "allow_insecure_http=True; anyone on the network path can then read "
                "the key.",
            )
        warnings.warn(
            f"sending the CoCalc API key over plain HTTP to {parts.hostname}; anyone "
            "on the network path can read it",
            InsecureTransportWarning,
            stacklevel=5,
        )
        logger.warning("sending the API key over plain HTTP to %s", parts.hostname)

    def _scrub(self, text: str) -> str:
        key = self.settings.api_key
        if key and key in text:
            return text.replace(key, self.settings.masked_key or "…")
        return text


def _is_retryable(error: CoCalcError) -> bool:
    if isinstance(error, (NotListeningError, ConnectionFailedError)):
        return True
    return isinstance(error, HTTPStatusError) and error.status == 503


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _ca_bundle() -> str | bool:
    # requests reads REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE itself when verify is
    # True; it ignores SSL_CERT_FILE, which many systems use for a private CA.
    environ = os.environ
    if environ.get("REQUESTS_CA_BUNDLE") or environ.get("CURL_CA_BUNDLE"):
        return True
    return environ.get("SSL_CERT_FILE") or True
