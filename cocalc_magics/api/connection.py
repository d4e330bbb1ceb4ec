"""The connection object users create: settings, HTTP session and typed helpers."""

from __future__ import annotations

from cocalc_magics.api.execution import ExecMethods
from cocalc_magics.api.hub import HubMethods
from cocalc_magics.api.project import ProjectMethods
from cocalc_magics.api.transport import BaseConnection

__all__ = ["Connection"]


class Connection(ExecMethods, ProjectMethods, HubMethods, BaseConnection):
    """A client of one CoCalc site, with a pooled HTTP session.

    Parameters
    ----------
    settings : Settings, optional
        Resolved settings; by default :func:`resolve_settings` is called with
        *host*, *api_key* and *project_id*. Given together with *settings*, those
        three override it.
    host, api_key, project_id : str, optional
        Site URL (a base path such as ``https://host/cocalc`` works), API key, and
        the default project of project calls.
    allow_insecure_http : bool
        Allow sending the key over plain ``http://`` to a host other than loopback;
        each such request then warns.
    connect_timeout : float
        Seconds allowed to open a TCP and TLS connection.
    cold_start_margin : float
        Seconds added to the bridge timeout to get the HTTP read timeout of project
        calls, because the bridge first starts a stopped project.
    label : str, optional
        Name shown in ``repr``, for example ``"local server"``.
    max_retries : int
        Retries of an idempotent call after a 503 or a connection failure.
    retry_backoff : float
        Seconds before the first retry; each further retry waits twice as long.

    Examples
    --------
    >>> with Connection() as cocalc:                      # doctest: +SKIP
    ...     print(cocalc.exec("date").stdout)
    """
