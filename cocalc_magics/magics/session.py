"""The connection the magics use, and how ``connect`` and ``local`` replace it.

The first command that needs CoCalc builds a connection from the traits and the
client's settings resolution (environment variables, then the user config file).
``%cocalc connect`` and ``%cocalc local`` replace it. The API key lives only in the
client's ``Settings``, never in a trait or in this module's output.
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import TYPE_CHECKING

from IPython.core.error import UsageError

if TYPE_CHECKING:
    from cocalc_magics.api import Connection
    from cocalc_magics.magics.config import CoCalcMagicsConfig

logger = logging.getLogger(__name__)

LOCAL_DIR_VARIABLE = "COCALC_MAGICS_LOCAL_DIR"
LOCAL_LABEL = "local server"


class Session:
    """The current connection of one ``CoCalcMagics`` instance.

    Parameters
    ----------
    config
        The magics' configuration, read for ``host`` and ``project``.
    """

    def __init__(self, config: CoCalcMagicsConfig) -> None:
        self._config = config
        self._connection: Connection | None = None
        self.local_data_dir: str | None = None
        # Projects seen running through this connection; see run_command.
        self.running_projects: set[str] = set()

    @property
    def connection(self) -> Connection:
        """The current connection, built from the settings on first use."""
        if self._connection is None:
            from cocalc_magics.api import Connection, resolve_settings

            settings = resolve_settings(
                host=self._config.host, project_id=self._config.project
            )
            self._connection = Connection(settings)
        return self._connection

    @property
    def is_local(self) -> bool:
        return self._connection is not None and self._connection.label == LOCAL_LABEL

    def where(self) -> str:
        """Name the site for messages: ``local server (URL)`` or the site URL."""
        connection = self._connection
        if connection is None:
            return self._config.host or "the configured site"
        if connection.label:
            return f"{connection.label} ({connection.host})"
        return connection.host

    def project_id(self, explicit: str | None = None) -> str:
        """Return the project to address, raising ``UsageError`` if there is none.

        An explicit ``--project`` value must be a UUID; it is returned in lowercase.
        """
        if explicit:
            try:
                return str(uuid.UUID(explicit.strip()))
            except ValueError:
                raise UsageError(
                    f"invalid project id {explicit!r} for --project: it must be a "
                    "UUID; %cocalc projects lists the ids of your projects."
                ) from None
        project_id = self.connection.project_id
        if not project_id:
            raise UsageError(
                "no project is set; pass --project PROJECT_ID, set COCALC_PROJECT_ID, "
                "or run %cocalc connect --project PROJECT_ID (or %cocalc local)."
            )
        return project_id

    def replace(self, connection: Connection) -> None:
        """Use ``connection`` from now on, closing the previous one."""
        self.close()
        self._connection = connection
        self.running_projects.clear()
        logger.debug("using %s", self.where())

    def use_local_server(self, data_dir: str | None = None) -> Connection:
        """Start or reuse the local CoCalc-compatible server and connect to it."""
        from cocalc_magics.api import Connection, Settings
        from cocalc_magics.server import ensure_local_server

        data_dir = data_dir or self._config.local_data_dir
        data_dir = data_dir or os.environ.get(LOCAL_DIR_VARIABLE) or None
        info = ensure_local_server(data_dir)
        source = f"local server record in {info.data_dir}"
        settings = Settings(
            host=info.url,
            api_key=info.api_key,
            project_id=info.project_id,
            sources={"host": source, "api_key": source, "project_id": source},
        )
        connection = Connection(settings, label=LOCAL_LABEL)
        self.replace(connection)
        self.local_data_dir = str(info.data_dir)
        return connection

    def use_project(self, project_id: str) -> None:
        """Address *project_id* from now on, on the same site with the same key."""
        current = self.connection
        settings = current.settings.with_overrides(
            project_id=project_id, source="CoCalcMagics.project"
        )
        self.replace(current.copy(settings))

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
