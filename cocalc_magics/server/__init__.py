"""The local CoCalc-compatible API server.

It answers CoCalc's HTTP bridge (``/api/conat/hub`` and ``/api/conat/project``) with
CoCalc's envelope, authentication and error strings, and runs projects as
directories on this machine. Names are imported on first use, so that importing this
package (for example to build the ``cocalc-magics`` parser) stays fast.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "LocalServer",
    "ServerInfo",
    "ServerProcess",
    "default_data_dir",
    "ensure_local_server",
    "spawn_server_process",
    "stop_local_server",
]

_HOMES = {
    "LocalServer": "cocalc_magics.server.runtime",
    "default_data_dir": "cocalc_magics.server.runtime",
    "ServerInfo": "cocalc_magics.server.launch",
    "ServerProcess": "cocalc_magics.server.launch",
    "ensure_local_server": "cocalc_magics.server.launch",
    "spawn_server_process": "cocalc_magics.server.launch",
    "stop_local_server": "cocalc_magics.server.launch",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(home), name)


def __dir__() -> list[str]:
    return sorted(__all__)
