"""End to end in headless Chromium: `specdec-diag dashboard sample_logs` serves on a free localhost port,
every page is opened, its main elements must render without an exception, and a screenshot of each is
saved to docs/img/ (shown by docs/dashboard.md and the README).

Needs Debian `chromium` + `chromium-driver` (`make browser-deps`); skipped with a reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_logs"
SHOTS = Path(os.environ.get("SPECDEC_SCREENSHOT_DIR", ROOT / "docs" / "img"))
#: url path -> (file name, CSS selector that must appear once the page has rendered, minimum count)
PAGES = {
    "": ("overview", '[data-testid="stMetric"]', 5),
    "acceptance": ("acceptance", ".js-plotly-plot", 2),
    "bottlenecks": ("bottlenecks", ".js-plotly-plot", 1),
    "findings": ("findings", '[data-testid="stExpander"]', 1),
    "trace": ("trace", "table.tx", 1),
    "compare": ("compare", ".js-plotly-plot", 2),
}
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1440,2400", "--hide-scrollbars")


def _which(*names: str) -> str | None:
    return next((p for n in names if (p := shutil.which(n))), None)


def _has_traces() -> bool:
    """Whether sample_logs/ holds a specdec-diag trace (else the trace page shows a message instead)."""
    for f in SAMPLE.rglob("*.jsonl*"):
        try:
            with open(f, "rb") as fh:
                head = fh.read(4096)
        except OSError:
            continue
        if f.suffix == ".gz":
            import zlib

            try:
                head = zlib.decompressobj(31).decompress(head)  # a gzip member's first bytes
            except zlib.error:
                continue
        if b"specdec-trace@1" in head:
            return True
    return False


if not _has_traces():
    PAGES["trace"] = ("trace", '[data-testid="stAlert"]', 1)

CHROMIUM = _which("chromium", "chromium-browser", "google-chrome")
DRIVER = _which("chromedriver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not (CHROMIUM and DRIVER):
        pytest.skip("chromium / chromedriver not installed (run `make browser-deps`)")
    if not any(SAMPLE.rglob("*.*")):
        pytest.skip("sample_logs/ is empty")
    port = free_port()
    env = dict(os.environ, SPECDEC_CACHE_DIR=str(tmp_path_factory.mktemp("cache")))
    log = tmp_path_factory.mktemp("srv") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from specdec_diag.cli import main; main()", "dashboard", str(SAMPLE),
             "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
            if proc.poll() is not None:
                pytest.fail(f"server exited: {log.read_text()[-2000:]}")
        else:
            pytest.fail(f"server did not come up: {log.read_text()[-2000:]}")
        assert f"http://127.0.0.1:{port}" in log.read_text(), "the CLI prints the URL"
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="specdec-chromium-")
    for f in (*CHROME_FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(f)
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_until(check, timeout: float, message) -> None:
    """Poll ``check()`` every 0.5 s until it is true; else fail with ``message`` (a str, or a callable
    for a message that shows the page's state at the time)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(message() if callable(message) else message)


def wait_rendered(drv, selector: str, count: int, timeout: float = 120) -> None:
    """Until the script has finished (no running indicator), ``selector`` shows ``count`` times and
    the first load (ingest) is over."""
    from selenium.webdriver.common.by import By

    deadline = time.time() + timeout
    while time.time() < deadline:
        running = drv.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
        found = drv.find_elements(By.CSS_SELECTOR, selector)
        if len(found) >= count and not running:
            time.sleep(3.0)  # plotly draws, and elements fade in, after they appear
            return
        time.sleep(0.5)
    raise AssertionError(f"{selector!r} did not render {count} time(s) within {timeout:.0f} s")


@pytest.mark.parametrize("path", list(PAGES))
def test_page_renders_in_chromium(server, browser, path):
    from selenium.webdriver.common.by import By

    name, selector, count = PAGES[path]
    browser.get(f"{server}/{path}")
    wait_rendered(browser, selector, count)
    exc = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    assert not exc, exc[0].text[:1000]
    nav = [a.text.splitlines()[-1] for a in browser.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNav"] a')]
    assert {"Overview", "Acceptance", "Bottlenecks", "Findings", "Trace explorer", "Compare"} <= set(nav), nav
    title = browser.find_element(By.CSS_SELECTOR, "h1").text
    assert title.lower().startswith(name[:5]), title
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SHOTS / f"{name}.png"))


def test_sidebar_navigation_and_escape_message(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(server)
    wait_rendered(browser, '[data-testid="stMetric"]', 5)
    link = next(a for a in browser.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNav"] a')
                if a.text.splitlines()[-1] == "Findings")
    link.click()
    wait_rendered(browser, '[data-testid="stExpander"]', 1)
    assert browser.find_element(By.CSS_SELECTOR, "h1").text.startswith("Findings")
    box = browser.find_element(By.CSS_SELECTOR, '[data-testid="stSidebar"] input[type="text"]')
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("../..", Keys.ENTER)
    wait_until(lambda: "outside the directory" in " ".join(
        e.text for e in browser.find_elements(By.CSS_SELECTOR, '[data-testid="stAlert"]')), 60,
        "no message for a ../ escape")
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')


def test_fleet_overview_and_run_selector(server, browser):
    """The Overview of sample_logs/fleet: counts by status and the runs table; choosing the broken
    replica in the sidebar's run selector scopes the Overview to it (screenshots of both)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(server)
    wait_rendered(browser, '[data-testid="stMetric"]', 5)
    box = browser.find_element(By.CSS_SELECTOR, '[data-testid="stSidebar"] input[type="text"]')
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("fleet", Keys.ENTER)
    def metrics() -> str:
        return texts(browser, '[data-testid="stMetric"]')

    wait_until(lambda: "Runs" in metrics() and "7" in metrics(), 90, lambda: f"no fleet overview: {metrics()!r}")
    wait_rendered(browser, '[data-testid="stDataFrame"]', 1)
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SHOTS / "fleet.png"))
    select = browser.find_element(By.CSS_SELECTOR, '[data-testid="stSidebar"] [data-testid="stSelectbox"] input')
    select.click()
    select.send_keys("host-c", Keys.ENTER)
    wait_until(lambda: any(s in texts(browser, '[data-testid="stCaptionContainer"]')
                           for s in ("run `host-c/vllm.log", "run host-c/vllm.log")), 60,
               "the run selector did not scope the Overview")
    alerts = texts(browser, '[data-testid="stAlert"]')
    assert "Drafter broken" in alerts or "DRAFTER_BROKEN" in alerts, alerts
    assert browser.save_screenshot(str(SHOTS / "fleet-run.png"))


def texts(drv, selector: str) -> str:
    """The text of every element matching ``selector``; elements a rerun replaced meanwhile are skipped."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    out = []
    for e in drv.find_elements(By.CSS_SELECTOR, selector):
        try:
            out.append(e.text)
        except StaleElementReferenceException:
            continue
    return " ".join(out)
