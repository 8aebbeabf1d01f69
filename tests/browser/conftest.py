"""Real-browser fixtures: a seeded store, ``streamlit run`` as a subprocess, Chromium.

The dashboard runs exactly as a user starts it (``streamlit run app/main.py``) on a free
loopback port, against a copy of the seeded demo store in a temporary
``ALIGNBOARD_HOME``. The test process points MLflow at the same store, so a test can
check through MLflow's API what the browser did. Chromium is Debian's package (the
Makefile installs it when missing), driven by Playwright's sync API.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
STARTUP_TIMEOUT_S = 60
MAX_SCREENSHOT_HEIGHT = 6000

#: A trace whose every field tries to run script, load markup or restyle the page.
INJECTION_ID = "e2e-injection"
INJECTION_QUESTION = (
    "<script>window.__pwned=1</script> Hi, **bold** [link](javascript:alert(1)) <h1>big</h1>"
)
INJECTION_REPLY = (
    '<img src=x onerror="window.__pwned=2"> <style>body{display:none}</style> '
    "<h1>big</h1> **bold** [link](javascript:alert(1))"
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
            return resp.status == 200 and resp.read().strip() == b"ok"
    except OSError:
        return False


@dataclass
class DashboardServer:
    """A running dashboard and the store it serves."""

    url: str
    """Base URL, e.g. ``http://127.0.0.1:54321``."""
    experiment_id: str
    """The demo experiment."""
    injection_trace_id: str
    """The imported trace full of HTML/script/markdown tricks."""
    home: Path
    """The temporary ``ALIGNBOARD_HOME``."""
    log: Path
    """The server's stdout and stderr."""
    process: subprocess.Popen = field(repr=False)

    def page_url(self, path: str = "") -> str:
        """URL of a page (``label``, ``label?trace=...``)."""
        return f"{self.url}/{path}"


def _import_injection_trace(experiment_name: str, folder: Path) -> str:
    from core.io.importer import import_file

    path = folder / "injection.jsonl"
    record = {"id": INJECTION_ID, "inputs": INJECTION_QUESTION, "outputs": INJECTION_REPLY}
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    result = import_file(path, experiment_name)
    assert result.traces_written == 1, result
    return result.trace_ids[0]


@pytest.fixture(scope="module")
def dashboard(
    _demo_template, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DashboardServer]:
    """The seeded demo store (plus the injection trace) served by ``streamlit run``."""
    import mlflow

    from core.io.demo_seed import DEMO_EXPERIMENT
    from core.store import config

    template, experiment_id = _demo_template
    home = tmp_path_factory.mktemp("browser-home")
    db = home / "mlflow.db"
    shutil.copy(template, db)
    uri = f"sqlite:///{db}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    log = ARTIFACTS / "browser-server.log"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv(config.HOME_ENV, str(home))
        config.configure(uri)
        trace_id = _import_injection_trace(DEMO_EXPERIMENT, home)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
        }
        cmd = [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app/main.py",
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--server.fileWatcherType",
            "none",
            "--browser.gatherUsageStats",
            "false",
        ]
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while not _healthy(url):
                if proc.poll() is not None:
                    pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text()}")
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"streamlit not healthy after {STARTUP_TIMEOUT_S}s:\n{log.read_text()}"
                    )
                time.sleep(0.2)
            yield DashboardServer(url, experiment_id, trace_id, home, log, proc)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def browser(dashboard) -> Iterator[object]:
    """Headless Debian Chromium driven by Playwright."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make test` (it installs Debian's chromium).")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageRecorder:
    """Dialogs and page errors seen while a test drove the page."""

    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def page(browser, dashboard):
    """A fresh browser tab (its own Streamlit session); dialogs are recorded and dismissed."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    seen = PageRecorder()

    def _dialog(d) -> None:
        seen.dialogs.append(f"{d.type}: {d.message}")
        d.dismiss()

    tab.on("dialog", _dialog)
    tab.on("pageerror", lambda exc: seen.errors.append(str(exc)))
    tab.recorder = seen  # type: ignore[attr-defined]
    try:
        yield tab
    finally:
        context.close()


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot as ``test-artifacts/screenshots/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    # Streamlit scrolls inside its main container, so a "full page" shot is one viewport:
    # grow the viewport to the content for the shot, then put it back.
    size = page.viewport_size
    height = page.evaluate(
        """() => Math.max(...[...document.querySelectorAll(
            '[data-testid="stMain"], [data-testid="stMainBlockContainer"]')]
            .map(e => e.scrollHeight), 0)"""
    )
    tall = min(max(int(height) + 80, size["height"]), MAX_SCREENSHOT_HEIGHT)
    if tall > size["height"]:
        page.set_viewport_size({"width": size["width"], "height": tall})
        page.wait_for_timeout(300)
    try:
        page.screenshot(path=str(path), full_page=True)
    finally:
        if tall > size["height"]:
            page.set_viewport_size(size)
    return path


def wait_idle(page, timeout_ms: int = 30_000) -> None:
    """Wait until Streamlit has finished its current script run."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
    page.wait_for_function(
        """() => {
            const app = document.querySelector('[data-testid="stApp"]');
            const state = app && app.getAttribute('data-test-script-state');
            return state === 'notRunning' || state === 'compilationError';
        }""",
        timeout=timeout_ms,
    )
    page.wait_for_timeout(250)


def choose_reviewer(page, name: str) -> None:
    """Type ``name`` into the sidebar's reviewer box and press Enter, as a user does."""
    box = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').filter(
        has_text="Your name"
    )
    box.locator("input").click()
    page.keyboard.type(name)
    page.keyboard.press("Enter")
    wait_idle(page)
