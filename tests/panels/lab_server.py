"""A real JupyterLab server on loopback for the browser test, fully isolated.

The server gets a random free port, token authentication, ``--no-browser``, its own
temporary root directory, and its own ``JUPYTER_CONFIG_DIR``, ``JUPYTER_DATA_DIR``,
``JUPYTER_RUNTIME_DIR``, JupyterLab settings and workspaces directories, so neither
the user's configuration nor another test run can change what the browser loads.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

STARTUP_TIMEOUT_S = 90.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_notebook(path: Path, sources: list[str]) -> None:
    """Write a Python 3 notebook whose code cells have *sources*, without outputs."""
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(notebook, str(path))


class JupyterLab:
    """A ``jupyter lab`` child process; use as a context manager.

    Parameters
    ----------
    base : Path
        Empty directory for the root directory and the Jupyter directories.
    environment : dict
        Extra environment variables, inherited by the kernels.
    """

    def __init__(self, base: Path, environment: dict[str, str]) -> None:
        self.base = base
        self.root = base / "root"
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.environment = environment
        self.process: subprocess.Popen | None = None
        self.log_path = base / "jupyterlab.log"

    def _environment(self) -> dict[str, str]:
        env = {**os.environ, **self.environment}
        for name, folder in (
            ("JUPYTER_CONFIG_DIR", "config"),
            ("JUPYTER_DATA_DIR", "data"),
            ("JUPYTER_RUNTIME_DIR", "runtime"),
            ("JUPYTERLAB_SETTINGS_DIR", "lab-settings"),
            ("JUPYTERLAB_WORKSPACES_DIR", "lab-workspaces"),
            ("IPYTHONDIR", "ipython"),
        ):
            path = self.base / folder
            path.mkdir(parents=True, exist_ok=True)
            env[name] = str(path)
        return env

    def start(self) -> JupyterLab:
        self.root.mkdir(parents=True, exist_ok=True)
        env = self._environment()

        # Turn off the news and update checks, which would reach the internet.
        settings = Path(env["JUPYTERLAB_SETTINGS_DIR"])
        plugin = settings / "@jupyterlab" / "apputils-extension"
        plugin.mkdir(parents=True, exist_ok=True)
        (plugin / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )

        command = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--port-retries=0",
            f"--ServerApp.root_dir={self.root}",
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.allow_remote_access=False",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
        ]
        if os.geteuid() == 0:
            # CI runs as root in a throwaway machine.
            command.append("--allow-root")

        log = self.log_path.open("w")
        self.process = subprocess.Popen(
            command,
            cwd=self.root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_until_listening()
        return self

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"jupyter lab exited with {self.process.returncode}:\n"
                    + self.log_path.read_text()[-3000:]
                )
            try:
                reply = requests.get(
                    f"{self.url}/api/status",
                    headers={"Authorization": f"token {self.token}"},
                    timeout=2,
                )
                if reply.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"jupyter lab did not listen within {STARTUP_TIMEOUT_S} s")

    def notebook_url(self, name: str) -> str:
        """URL that opens the notebook *name* of the root directory in JupyterLab."""
        return f"{self.url}/lab/tree/{name}?token={self.token}&reset"

    def stop(self) -> None:
        """Stop the server and its kernels (the whole process group)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def __enter__(self) -> JupyterLab:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
