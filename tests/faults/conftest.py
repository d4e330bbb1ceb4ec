"""Fixtures of the fault suite, and the scan that keeps API keys out of everything.

Every test here uses :data:`CANARY_KEY` as its API key, or a local server whose key
is registered with :func:`secret_scan`. The scan collects what the suite produced:

- the stdout, stderr and log sections pytest captured for each test, and the text
  of each failure report;
- every log record of every logger at every level, urllib3's debug records
  included, with exception tracebacks rendered with their local variables;
- what tests hand to :meth:`SecretScan.add`: cell outputs and display data (see
  :func:`run_cell`), ``repr`` of results and exceptions, tracebacks with locals;
- the state of every live ipywidget and the ``repr`` of every name a test added to
  the shell's namespace, after each test;
- every file under the suite's data, config and cache directories (job ledgers,
  saved notebooks, server logs), except the two files that store a local server's
  key on purpose, readable only by their owner.

At the end of the session the scan fails the run if any registered key occurs in
any of it. ``test_secret_scan.py`` plants the canary in each kind of place to show
that the scan finds it.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from tests.support.fake_server import FakeCoCalc
from tests.support.local_server import RunningServer, start_server

CANARY_KEY = "sk-CANARY-faults-4b7d1e9a2c6f"
PROJECT_ID = "11111111-2222-3333-4444-555555555555"

# A local server keeps its key in these files on purpose (mode 0600); the scan
# checks their mode instead of their content.
KEY_STORES = ("connection.json", "state.sqlite3", "state.sqlite3-wal")


@dataclass
class SecretScan:
    """Texts and directories to search for the keys in :attr:`secrets`."""

    secrets: set[str] = field(default_factory=lambda: {CANARY_KEY})
    texts: list[tuple[str, str]] = field(default_factory=list)
    roots: list[Path] = field(default_factory=list)

    def add(self, where: str, value: Any) -> None:
        """Record ``value`` (text, bytes, or any object by repr and JSON)."""
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif not isinstance(value, str):
            value = _describe(value)
        self.texts.append((where, value))

    def add_exception(self, where: str, error: BaseException) -> None:
        """Record an exception: str, repr, and traceback rendered with locals."""
        self.add(f"{where} str", str(error))
        self.add(f"{where} repr", repr(error))
        self.add(f"{where} traceback", render_with_locals(error))

    def findings(self) -> list[str]:
        """Return where a secret was found, one line per finding."""
        found = [
            f"{where}: contains a key"
            for where, text in self.texts
            if any(secret in text for secret in self.secrets)
        ]
        for path in self.files():
            if path.name in KEY_STORES:
                mode = stat.S_IMODE(path.stat().st_mode)
                if mode & 0o077:
                    found.append(f"{path}: stores a key with mode {oct(mode)}")
                continue
            data = path.read_bytes()
            if any(secret.encode() in data for secret in self.secrets):
                found.append(f"{path}: contains a key")
        return found

    def files(self) -> Iterator[Path]:
        # Queued job-ledger writes land first, so the scan reads them too.
        if "cocalc_magics.jobs" in sys.modules:
            from cocalc_magics.jobs.ledger import flush_pending_writes

            flush_pending_writes(timeout=30)
        for root in self.roots:
            if root.exists():
                yield from (path for path in root.rglob("*") if path.is_file())


def _describe(value: Any) -> str:
    parts = [repr(value)]
    html = getattr(value, "_repr_html_", None)
    if callable(html):
        parts.append(str(html()))
    try:
        parts.append(json.dumps(value, default=repr))
    except (TypeError, ValueError):
        pass
    return "\n".join(parts)


def render_with_locals(error: BaseException) -> str:
    """Render ``error``'s traceback with the repr of every frame's local variables."""
    return "".join(
        traceback.TracebackException.from_exception(error, capture_locals=True).format()
    )


class _LocalsFormatter(logging.Formatter):
    def formatException(self, ei) -> str:
        return "".join(traceback.TracebackException(*ei, capture_locals=True).format())


class _Recorder(logging.Handler):
    """Formats every record, at every level, into the scan."""

    def __init__(self, scan: SecretScan):
        super().__init__(logging.DEBUG)
        self.scan = scan
        self.setFormatter(_LocalsFormatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.scan.add(f"log record {record.name}", self.format(record))


_SCAN = SecretScan()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Add the captured output, logs and failure text of each test to the scan."""
    for title, text in report.sections:
        _SCAN.add(f"{report.nodeid} {title}", text)
    if report.failed:
        _SCAN.add(f"{report.nodeid} failure report", report.longreprtext)


@pytest.fixture(scope="session", autouse=True)
def secret_scan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecretScan]:
    """Route the suite's files and logs into the scan; fail if a key leaked."""
    base = tmp_path_factory.mktemp("faults-home")
    saved = {name: os.environ.get(name) for name in _DIRECTORY_VARIABLES}
    for name in _DIRECTORY_VARIABLES:
        os.environ[name] = str(base / name.lower())
    _SCAN.roots.append(base)

    recorder = _Recorder(_SCAN)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(recorder)
    root.setLevel(logging.DEBUG)
    for name in ("urllib3", "requests", "cocalc_magics", "tornado", "asyncio"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield _SCAN
    finally:
        root.removeHandler(recorder)
        root.setLevel(old_level)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    findings = _SCAN.findings()
    assert not findings, "an API key leaked:\n" + "\n".join(findings[:20])


_DIRECTORY_VARIABLES = ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")


@pytest.fixture(autouse=True)
def _scan_widgets() -> Iterator[None]:
    """After each test, add the state of every live widget to the scan."""
    yield
    from ipywidgets.widgets import widget as widget_module

    # ipywidgets 8 keeps every open widget in this registry.
    for widget in list(widget_module._instances.values()):
        try:
            state = widget.get_state()
        except Exception:  # noqa: BLE001, S112 - a closed widget has no state
            continue
        _SCAN.add(f"widget {type(widget).__name__}", json.dumps(state, default=repr))


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[InteractiveShell]:
    """The process's InteractiveShell with cocalc_magics loaded.

    After the test the repr of every name the test added goes into the scan, and
    the names, the extension and its config are removed.
    """
    ip = InteractiveShell.instance()
    names_before = set(ip.user_ns)
    ip.run_line_magic("load_ext", "cocalc_magics")
    yield ip
    from cocalc_magics.jobs import stop_watchers

    # A detached job's watcher would keep polling a server that is gone.
    stop_watchers()
    ip.run_line_magic("unload_ext", "cocalc_magics")
    for name in set(ip.user_ns) - names_before:
        if not name.startswith("_i"):
            _SCAN.add(f"user namespace {name}", ip.user_ns[name])
        del ip.user_ns[name]
    ip.config.pop("CoCalcMagics", None)
    ip.run_line_magic("xmode", "Context")


@pytest.fixture
def magics(shell):
    """The registered CoCalcMagics instance."""
    return shell.magics_manager.registry["CoCalcMagics"]


@pytest.fixture
def fake(shell, monkeypatch) -> Iterator[FakeCoCalc]:
    """A fake CoCalc with the canary key, reached through the documented variables."""
    server = FakeCoCalc(api_key=CANARY_KEY, project_id=PROJECT_ID).start()
    monkeypatch.setenv("COCALC_HOST", server.url)
    monkeypatch.setenv("COCALC_API_KEY", CANARY_KEY)
    monkeypatch.setenv("COCALC_PROJECT_ID", PROJECT_ID)
    yield server
    for request in server.requests:
        # The key must reach the server, and only in the Authorization header.
        _SCAN.add(f"fake request {request.name} body", request.body)
    server.stop()


@dataclass
class CellRun:
    """What a cell produced: its text streams, display data and error."""

    stdout: str
    stderr: str
    outputs: list[dict]
    error: BaseException | None

    @property
    def text(self) -> str:
        """Everything the user sees, as one string (ANSI codes left in)."""
        shown = [self.stdout, self.stderr]
        for data in self.outputs:
            shown.extend(str(value) for value in data.values())
        return "\n".join(shown)


def run_cell(ip: InteractiveShell, source: str) -> CellRun:
    """Run ``source`` as a notebook cell would; record everything it showed."""
    with capture_output() as captured:
        result = ip.run_cell(source)
    error = result.error_in_exec or result.error_before_exec
    run = CellRun(
        stdout=captured.stdout,
        stderr=captured.stderr,
        outputs=[dict(output.data) for output in captured.outputs],
        error=error,
    )
    _SCAN.add(f"cell {source[:40]!r} stdout", run.stdout)
    _SCAN.add(f"cell {source[:40]!r} stderr", run.stderr)
    for output in captured.outputs:
        _SCAN.add(f"cell {source[:40]!r} display", {**output.data, **output.metadata})
    if error is not None:
        _SCAN.add_exception(f"cell {source[:40]!r} error", error)
    return run


def register_server(server: RunningServer) -> RunningServer:
    """Add a local server's key and data directory to the scan."""
    _SCAN.secrets.add(server.api_key)
    _SCAN.roots.append(server.data_dir)
    return server


@pytest.fixture(scope="module")
def fault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A local server child of this module's own, whose key the scan looks for."""
    server = register_server(start_server(tmp_path_factory.mktemp("fault-server")))
    try:
        yield server
    finally:
        server.process.stop()
