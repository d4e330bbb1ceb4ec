"""A ``requests`` session that reads proxy and CA settings from the environment cheaply.

On every request, ``requests.Session.request`` reads proxies, ``NO_PROXY`` and a CA
bundle from the environment (``merge_environment_settings``). On Linux the standard
library finds them by decoding and scanning every environment variable, twice per
request, so that step costs about as much as the rest of preparing the request.

:class:`EnvironmentCachedSession` keeps those settings and reuses them while the
variables they depend on are unchanged. Each request still checks them. It scans
the variable names once and compares the values of the few that matter: any
``*_proxy`` in any letter case, ``REQUEST_METHOD``, ``REQUESTS_CA_BUNDLE`` and
``CURL_CA_BUNDLE``. A proxy set or removed between two requests is so used at once,
as with a plain session. On macOS and Windows, where the standard library also
reads the system's proxy settings, the session does what a plain one does.
"""

from __future__ import annotations

import os
import urllib.request
from typing import Any

import requests

__all__ = ["EnvironmentCachedSession"]

# The variables besides *_proxy that requests and urllib read for these settings.
_OTHER_VARIABLES = ("REQUEST_METHOD", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
_MAX_CACHED = 32


def _environment_only_proxies() -> bool:
    # True where urllib takes proxies from environment variables alone; elsewhere
    # getproxies() is a function that also reads the system configuration.
    return urllib.request.getproxies is urllib.request.getproxies_environment


def _relevant_environment() -> tuple[tuple[str, str], ...]:
    """Return the variables that proxy and CA-bundle lookups depend on, sorted."""
    environ = os.environ
    names = [name for name in environ if name[-6:].lower() == "_proxy"]
    names.extend(name for name in _OTHER_VARIABLES if name in environ)
    return tuple(sorted((name, environ[name]) for name in names))


class EnvironmentCachedSession(requests.Session):
    """A ``requests.Session`` that caches what the environment adds to a request.

    The cached result is the one ``requests`` itself computed, for the same URL,
    arguments, session settings and relevant environment variables.
    """

    def __init__(self) -> None:
        super().__init__()
        self._environment_only = _environment_only_proxies()
        self._merged: dict[tuple, dict[str, Any]] = {}

    def merge_environment_settings(
        self, url, proxies, stream, verify, cert
    ) -> dict[str, Any]:
        if not (self.trust_env and self._environment_only):
            return super().merge_environment_settings(
                url, proxies, stream, verify, cert
            )

        key = (
            url,
            _frozen(proxies),
            stream,
            _hashable(verify),
            _hashable(cert),
            _frozen(self.proxies),
            self.stream,
            _hashable(self.verify),
            _hashable(self.cert),
            _relevant_environment(),
        )
        merged = self._merged.get(key)
        if merged is None:
            # requests adds the environment's proxies to the dict passed in, so
            # it gets a copy.
            merged = super().merge_environment_settings(
                url, dict(proxies or {}), stream, verify, cert
            )
            if len(self._merged) >= _MAX_CACHED:
                self._merged.clear()
            self._merged[key] = merged

        # The caller may change the proxies dict, so it gets its own copy.
        return {**merged, "proxies": dict(merged["proxies"])}


def _frozen(mapping: dict | None) -> tuple | None:
    if mapping is None:
        return None
    return tuple(sorted(mapping.items()))


def _hashable(value: Any) -> Any:
    # requests also accepts a list for ``cert`` (and in practice for ``verify``).
    return tuple(value) if isinstance(value, list) else value
