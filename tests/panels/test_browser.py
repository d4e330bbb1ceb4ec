"""The project panel in a real JupyterLab, driven by headless Chromium.

The test starts a local server and a JupyterLab on loopback and opens a notebook
that shows the project panel. In the browser it checks that the panel renders and
that a job's progress advances while another cell keeps the kernel busy. Then the
Stop button must stop the project, as the hub reports. A screenshot is kept in
``test-artifacts/panel.png``.

Chromium comes from the operating system (``/usr/bin/chromium``, Debian's package)
and Playwright only drives it: no browser is downloaded.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from tests.panels.lab_server import JupyterLab, write_notebook
from tests.support.local_server import start_server, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

# CI installs Chromium through tests/browser/setup.sh, so there a missing browser
# is a broken setup and the test must fail rather than skip.
CHROMIUM_MISSING = not os.access(CHROMIUM, os.X_OK) and not os.environ.get("CI")

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM_MISSING,
        reason=f"Chromium is not installed at {CHROMIUM} "
        "(install it with tests/browser/setup.sh)",
    ),
    pytest.mark.timeout(240),
]

# The job prints 5%, 10%, ... 100%, one step every 0.6 s (about 12 s in all).
JOB_COMMAND = 'for i in $(seq 1 20); do echo "$((i * 5))%"; sleep 0.6; done'
JOB_CELL = f"""\
%load_ext cocalc_magics
from cocalc_magics.api import Connection
from cocalc_magics.jobs import Job

connection = Connection()
connection.start_project()
job = Job.start(connection, {JOB_COMMAND!r}, timeout=120)"""
PANEL_CELL = "%cocalc panel --interval 1"
BUSY_CELL = "import time\ntime.sleep(8)\n'slept'"


@pytest.fixture
def server(tmp_path):
    running = start_server(tmp_path / "server")
    yield running
    running.process.stop()


@pytest.fixture
def lab(tmp_path, server):
    environment = {
        "COCALC_HOST": server.url,
        "COCALC_API_KEY": server.api_key,
        "COCALC_PROJECT_ID": server.project_id,
        "COCALC_MAGICS_DATA_DIR": str(tmp_path / "ledger"),
        "COCALC_MAGICS_LOCAL_DIR": str(tmp_path / "unused-local-dir"),
    }
    with JupyterLab(tmp_path / "lab", environment) as running:
        write_notebook(running.root / "panel.ipynb", [JOB_CELL, PANEL_CELL, BUSY_CELL])
        yield running


@pytest.fixture
def page(lab, request):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            yield page
            if request.node.rep_call.failed:
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "panel-failure.png"))
        finally:
            browser.close()


def job_percent(page) -> int | None:
    """The percentage shown in the job row's progress bar, or None."""
    text = page.locator(".cocalc-job-row").first.inner_text()
    found = re.findall(r"(\d+)%", text)
    return int(found[-1]) if found else None


def busy_cell_running(page) -> bool:
    """True while the busy cell shows the ``[*]`` prompt of a running cell."""
    prompt = page.locator(".jp-Cell").nth(2).locator(".jp-InputPrompt").inner_text()
    return "*" in prompt


def hub_state(server) -> str | None:
    reply = server.hub("projects.state", {"project_id": server.project_id})
    return reply.get("state")


def test_panel_in_browser(lab, server, page):
    page.goto(lab.notebook_url("panel.ipynb"))
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
    # The status bar shows "Python 3 (ipykernel) | Idle" once the kernel is ready.
    page.get_by_text(re.compile(r"\| Idle$")).first.wait_for(timeout=60_000)

    # Run the job cell, the panel cell, then the busy cell, which keeps the kernel
    # busy for 8 s.
    page.locator(".jp-Cell .jp-InputArea-editor").first.click()
    for _cell in range(3):
        page.keyboard.press("Shift+Enter")
    panel = page.locator(".cocalc-panel").first
    panel.wait_for(timeout=60_000)
    page.locator(".cocalc-job-row").first.wait_for(timeout=30_000)
    assert "running" in panel.locator(".cocalc-state").first.inner_text()

    # The progress must advance while the busy cell runs.
    seen: list[int] = []
    while busy_cell_running(page) and len(set(seen)) < 3:
        percent = job_percent(page)
        if percent is not None and (not seen or percent != seen[-1]):
            seen.append(percent)
        time.sleep(0.3)
    assert len(set(seen)) >= 3, f"progress seen during the busy cell: {seen}"
    assert seen == sorted(seen)
    assert busy_cell_running(page)
    ARTIFACTS.mkdir(exist_ok=True)
    panel.screenshot(path=str(ARTIFACTS / "panel.png"))

    # The API key must not reach the page.
    assert server.api_key not in page.content()

    # Stop clicked while the busy cell runs is handled once it ends.
    page.locator(".cocalc-stop-project").first.click()
    wait_until(lambda: hub_state(server) == "opened", timeout=60)
    page.locator(".cocalc-state[data-state='opened']").wait_for(timeout=30_000)
    assert "stopped" in panel.locator(".cocalc-state").first.inner_text()
    panel.screenshot(path=str(ARTIFACTS / "panel-stopped.png"))
