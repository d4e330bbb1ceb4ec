"""``cocalc-magics quickstart``: run the quickstart notebook against a local server.

The notebook is executed headless with nbclient in a fresh kernel. The kernel gets
``COCALC_MAGICS_LOCAL_DIR`` pointing at a data directory of its own (a temporary
one unless ``--data-dir`` is given), so the run never touches the user's local
server data. The local server it starts is stopped at the end unless
``--keep-server`` is given.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import textwrap
from pathlib import Path

NOTEBOOK_NAME = "quickstart.ipynb"
LOCAL_DIR_VARIABLE = "COCALC_MAGICS_LOCAL_DIR"


def add_quickstart_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``cocalc-magics quickstart`` to ``parser``."""
    parser.add_argument(
        "--output",
        default="quickstart.executed.ipynb",
        help="where to write the executed notebook (default: %(default)s).",
    )
    parser.add_argument(
        "--data-dir",
        help="data directory of the local server (default: a new temporary one).",
    )
    parser.add_argument(
        "--keep-server",
        action="store_true",
        help="leave the local server running after the notebook has run.",
    )
    parser.add_argument(
        "--timeout",
        type=_whole_seconds,
        default=120,
        help="seconds each notebook cell may take, rounded up to whole seconds "
        "(default: %(default)s).",
    )
    parser.set_defaults(run=run_quickstart)


def _whole_seconds(text: str) -> int:
    # nbclient takes whole seconds.
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds"
        ) from None
    if not seconds > 0 or math.isinf(seconds):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive number of seconds"
        )
    return math.ceil(seconds)


def find_notebook() -> Path:
    """Return the quickstart notebook shipped in the wheel or in a source checkout."""
    package_dir = Path(__file__).resolve().parent
    candidates = [
        package_dir / "notebooks" / NOTEBOOK_NAME,
        package_dir.parent / "notebooks" / NOTEBOOK_NAME,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "the quickstart notebook is missing; looked in "
        + ", ".join(str(candidate) for candidate in candidates)
    )


def run_quickstart(options: argparse.Namespace) -> int:
    """Execute the notebook, print a summary and return the exit code (0 = success)."""
    import nbformat
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    source = find_notebook()
    output = Path(options.output).expanduser().resolve()
    notebook = nbformat.read(source, as_version=4)
    # The kernel starts in the output's folder, so it must exist first.
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(
            f"cocalc-magics quickstart: cannot create the folder of --output "
            f"{output}: {error.strerror}. Pass --output with a writable path.",
            file=sys.stderr,
        )
        return 2

    with (
        _data_dir(options.data_dir) as data_dir,
        tempfile.TemporaryDirectory(prefix="cocalc-quickstart-ipc-") as socket_dir,
    ):
        # IPC sockets keep the kernel's traffic off the network, and ipykernel then
        # prints no warning about unencrypted TCP. nbclient does not shut down a
        # kernel manager it was given, so the finally clause does.
        kernel_manager = KernelManager(
            kernel_name="python3",
            transport="ipc",
            ip=os.path.join(socket_dir, "kernel"),
        )
        client = NotebookClient(
            notebook,
            timeout=options.timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(output.parent)}},
            km=kernel_manager,
        )
        failure = None
        try:
            with _environment(LOCAL_DIR_VARIABLE, str(data_dir)):
                client.execute()
        except CellExecutionError as error:
            failure = error
        finally:
            if kernel_manager.has_kernel:
                kernel_manager.shutdown_kernel()
            if not options.keep_server:
                _stop_server(data_dir)

    nbformat.write(notebook, output)
    print(summarize(notebook))
    print(f"\nExecuted notebook: {output}")
    if failure is not None:
        print(
            f"\nThe quickstart failed in a cell that was expected to pass:\n{failure}"
        )
        return 1
    if options.keep_server:
        print(f"The local server keeps running; its data is in {data_dir}.")
    return 0


def summarize(notebook) -> str:
    """Return one line per code cell: its outcome, its first line and first output."""
    lines = ["Quickstart results:"]
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        expected_error = "raises-exception" in cell.metadata.get("tags", [])
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if errors:
            outcome = "failed as expected" if expected_error else "FAILED"
        else:
            outcome = "ok"
        first_line = cell.source.splitlines()[0] if cell.source else ""
        lines.append(f"  [{outcome}] {first_line}")
        excerpt = _first_output(cell.outputs)
        if excerpt:
            lines.append(textwrap.indent(excerpt, "      "))
    return "\n".join(lines)


def _first_output(outputs) -> str:
    errors = [output for output in outputs if output.output_type == "error"]
    for output in errors or outputs:
        if output.output_type == "stream":
            text = output.text
        elif output.output_type == "error":
            text = f"{output.ename}: {output.evalue}"
        else:
            text = output.get("data", {}).get("text/plain", "")
        text = text.strip()
        if text:
            return text.splitlines()[0][:120]
    return ""


class _data_dir:
    """A context manager yielding the server data directory to use."""

    def __init__(self, chosen: str | None) -> None:
        self._chosen = chosen
        self._temporary: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> Path:
        if self._chosen:
            return Path(self._chosen).expanduser().resolve()
        self._temporary = tempfile.TemporaryDirectory(prefix="cocalc-quickstart-")
        return Path(self._temporary.name)

    def __exit__(self, *exc_info) -> None:
        if self._temporary is not None:
            self._temporary.cleanup()


class _environment:
    """Set one environment variable for the kernel started inside the block."""

    def __init__(self, name: str, value: str) -> None:
        self._name, self._value = name, value
        self._previous: str | None = None

    def __enter__(self) -> None:
        self._previous = os.environ.get(self._name)
        os.environ[self._name] = self._value

    def __exit__(self, *exc_info) -> None:
        if self._previous is None:
            os.environ.pop(self._name, None)
        else:
            os.environ[self._name] = self._previous


def _stop_server(data_dir: Path) -> None:
    from cocalc_magics.server import stop_local_server

    try:
        stop_local_server(data_dir)
    except OSError as error:
        print(
            f"warning: could not stop the local server in {data_dir}: {error}",
            file=sys.stderr,
        )
