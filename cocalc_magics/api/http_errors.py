"""Translation of failed HTTP exchanges into the client's exceptions.

Two kinds of failure end up here. The first is an exception raised by ``requests``
when no response arrived (refused, reset, TLS, timeouts, cut-off bodies). The second
is a response with a status other than 200 (proxy pages, 404 for a wrong base path,
413 for a large body). Bodies are shown as a short plain-text excerpt, never as raw
HTML.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.exceptions

from cocalc_magics.api.errors import (
    AuthenticationError,
    CoCalcError,
    ConfigurationError,
    ConnectionFailedError,
    HTTPStatusError,
    PermissionDeniedError,
    ProtocolError,
    ReadTimeoutError,
    RemoteError,
    RequestTooLargeError,
    TLSVerificationError,
    TransportError,
    classify_error_text,
)

__all__ = [
    "is_error_envelope",
    "text_excerpt",
    "translate_request_exception",
    "translate_status",
]

EXCERPT_CHARS = 200

_MAYBE_RUNNING_HINT = (
    "The connection closed before a response arrived. The request may have reached "
    "the server, so the work may be running; check before starting it again."
)


def is_error_envelope(value: Any) -> bool:
    """Tell whether a decoded body is CoCalc's error envelope.

    Only an object whose single key is ``error`` with a string value is one. A
    project state such as ``{"state": "opened", "error": ""}`` is a normal result.
    """
    return (
        isinstance(value, dict)
        and len(value) == 1
        and isinstance(value.get("error"), str)
    )


class _TextExtractor(HTMLParser):
    """Collects the visible text of an HTML page, skipping scripts and styles."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "style"):
            self._skipping += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def text_excerpt(
    body: bytes, content_type: str = "", limit: int = EXCERPT_CHARS
) -> str:
    """Return at most *limit* characters of readable text from a response body."""
    text = body.decode("utf-8", errors="replace")
    looks_html = "html" in content_type.lower() or text.lstrip()[:1] == "<"
    if looks_html:
        extractor = _TextExtractor()
        try:
            extractor.feed(text)
            extractor.close()
        except Exception:  # noqa: BLE001 - a broken page still deserves a message
            extractor.parts = ["(unreadable HTML page)"]
        text = " ".join(extractor.parts)

    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text or "(empty body)"


def _status_hint(status: int, url: str, location: str | None) -> str:
    if 300 <= status < 400:
        return (
            f"The server redirected to {location or 'another address'}. Set the host "
            "to the final URL; redirects are not followed, so that the key goes only "
            "to the configured host."
        )
    if status == 400:
        return "The server could not read the request body as JSON."
    if status == 404:
        return (
            f"Nothing was found at {url}. Check the host URL and its base path, for "
            "example https://example.org/cocalc."
        )
    if status == 429:
        return "The server is rate limiting requests. Wait a little, then retry."
    if status in (502, 503, 504):
        return (
            "A proxy or load balancer in front of CoCalc returned this error. The "
            "site may be restarting, or the request was held open too long; retry "
            "later, and use an async exec for long work."
        )
    if status >= 500:
        return "The server failed while handling the request. Retry later."
    return "The server did not accept the request."


def translate_status(
    response: requests.Response,
    method: str,
    *,
    project_id: str | None,
    scrub,
) -> CoCalcError:
    """Build the exception for a response whose status is not 200.

    A body that is an error envelope is classified by its text, and the status
    decides only when the text is not recognized. Otherwise the exception shows the
    status and a plain-text excerpt of the body.
    """
    status = response.status_code
    url = response.url or ""
    body = response.content or b""
    common = {"status": status, "project_id": project_id}

    envelope = _decode_envelope(body)
    if envelope is not None:
        text = scrub(envelope)
        error = classify_error_text(method, text, **common)
        if type(error) is not RemoteError:
            return error
        message = f"HTTP {status}: {error.message}"
    else:
        excerpt = scrub(text_excerpt(body, response.headers.get("Content-Type", "")))
        message = f"HTTP {status} {response.reason or ''}".rstrip() + f": {excerpt}"
        text = None

    if status == 401:
        return AuthenticationError(method, message, raw=text, **common)
    if status == 403:
        return PermissionDeniedError(
            method,
            message,
            raw=text,
            hint="The server refused access. Check the API key and the project id.",
            **common,
        )
    if status == 413:
        return RequestTooLargeError(method, message, raw=text, **common)
    hint = _status_hint(status, url, response.headers.get("Location"))
    return HTTPStatusError(
        method, message, raw=text, hint=hint, retry_safe=status == 503, **common
    )


def _decode_envelope(body: bytes) -> str | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value["error"] if is_error_envelope(value) else None


def _nested_exceptions(exc: BaseException) -> list[BaseException]:
    """Return *exc* and the exceptions wrapped in it, outermost first."""
    seen: list[BaseException] = []
    pending: list[Any] = [exc]
    while pending:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or current in seen:
            continue
        seen.append(current)
        pending.extend(current.args)
        pending.append(getattr(current, "reason", None))
        pending.append(current.__cause__)
        pending.append(current.__context__)
    return seen


def _find(chain: list[BaseException], kind: type | tuple) -> Any:
    return next((item for item in chain if isinstance(item, kind)), None)


_READ_TIMEOUT_VALUE = re.compile(r"\(read timeout=([0-9.]+)\)")


def _timed_out_in_handshake(
    exc: requests.RequestException, scheme: str, connect_timeout_s: float
) -> bool:
    """Return whether a read time-out happened during the TLS handshake.

    urllib3 2.x runs the handshake under the connect timeout but reports its
    time-out as a read time-out, "Read timed out. (read timeout=<connect timeout>)".
    NOTE: a read timeout configured equal to the connect timeout would look the same;
    the connection's read timeouts are always longer.
    """
    if scheme != "https":
        return False
    match = _READ_TIMEOUT_VALUE.search(str(exc))
    return match is not None and float(match.group(1)) == connect_timeout_s


def translate_request_exception(
    exc: requests.RequestException,
    method: str,
    *,
    url: str,
    project_id: str | None,
    idempotent: bool,
    read_timeout_s: float,
    connect_timeout_s: float,
) -> CoCalcError:
    """Build the exception for a ``requests`` failure during one call.

    ``retry_safe`` is True when the call is idempotent or when the request provably
    never reached the server (refused connection, unresolvable name, TLS failure).
    """
    parts = urlsplit(url)
    where = parts.netloc
    chain = _nested_exceptions(exc)
    not_sent = {"project_id": project_id, "retry_safe": True}
    maybe_sent = {"project_id": project_id, "retry_safe": idempotent}

    if isinstance(exc, requests.exceptions.SSLError):
        return _translate_tls(chain, method, where, not_sent)
    if isinstance(exc, requests.exceptions.ProxyError):
        return ConnectionFailedError(
            method,
            f"could not reach {where} through the HTTP proxy",
            hint="Check HTTPS_PROXY and HTTP_PROXY, or add the host to NO_PROXY.",
            **not_sent,
        )
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return ConnectionFailedError(
            method,
            f"timed out after {connect_timeout_s:g} s connecting to {where}",
            hint="Check the host URL and the network connection.",
            **not_sent,
        )
    if isinstance(exc, requests.exceptions.ReadTimeout):
        if _timed_out_in_handshake(exc, parts.scheme, connect_timeout_s):
            return ConnectionFailedError(
                method,
                f"TLS connection to {where} got no answer within "
                f"{connect_timeout_s:g} s",
                hint="The server may not speak TLS. If it serves plain HTTP (as the "
                "local server does), use http:// in the host URL.",
                **not_sent,
            )
        return ReadTimeoutError(
            method,
            f"no response from {where} within {read_timeout_s:g} s",
            **maybe_sent,
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        return _translate_connection(chain, method, where, not_sent, maybe_sent)
    if isinstance(
        exc,
        (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ),
    ):
        return ProtocolError(
            method,
            f"the response from {where} was cut off before its end",
            hint=_MAYBE_RUNNING_HINT,
            **maybe_sent,
        )
    if isinstance(
        exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidHeader)
    ):
        return ConfigurationError(
            method, f"invalid request for {where}: {exc}", project_id=project_id
        )
    return TransportError(
        method, f"request to {where} failed: {type(exc).__name__}", **maybe_sent
    )


def _translate_tls(chain, method: str, where: str, common: dict) -> CoCalcError:
    verification = _find(chain, ssl.SSLCertVerificationError)
    if verification is not None:
        reason = getattr(verification, "verify_message", "") or "certificate rejected"
        return TLSVerificationError(
            method,
            f"TLS certificate verification failed for {where}: {reason}",
            **common,
        )
    reason = _find(chain, ssl.SSLError)
    detail = getattr(reason, "reason", None) or "handshake failed"
    return ConnectionFailedError(
        method,
        f"TLS connection to {where} failed ({detail})",
        hint="Check that the host URL uses the scheme the server speaks "
        "(https:// or http://).",
        **common,
    )


def _translate_connection(
    chain, method: str, where: str, not_sent: dict, maybe_sent: dict
) -> CoCalcError:
    if _find(chain, ConnectionRefusedError) is not None:
        return ConnectionFailedError(
            method,
            f"connection to {where} refused",
            hint="Check that the server is running and the host URL and port are "
            "right.",
            **not_sent,
        )
    if _find(chain, (socket.gaierror, urllib3.exceptions.NameResolutionError)):
        return ConnectionFailedError(
            method,
            f"the host name in {where} could not be resolved",
            hint="Check the host URL for typos and the network or DNS settings.",
            **not_sent,
        )
    if _find(chain, urllib3.exceptions.NewConnectionError) is not None:
        return ConnectionFailedError(
            method,
            f"could not connect to {where}",
            hint="Check the host URL and the network connection.",
            **not_sent,
        )
    return ConnectionFailedError(
        method,
        f"the connection to {where} closed before a response arrived",
        hint=_MAYBE_RUNNING_HINT,
        **maybe_sent,
    )
