"""A real headless browser for page tests: Debian's chromium driven by selenium + chromedriver.

`load_page(path, screenshot)` opens a local file, and returns what the page logged to the
console (level, message: script errors, failed resource loads, console.* calls), every
`data-metric` cell's text, the images that failed to decode, and writes a screenshot of the
whole page. scripts/setup.sh installs chromium and chromium-driver; a test that needs them
fails (never skips) when they are missing.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: As root in a container: no sandbox; and nothing that reaches for the network on its own.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--window-size=1280,1000")


@dataclass(frozen=True)
class PageCheck:
    console: list[tuple[str, str]]
    metrics: dict[str, str]
    broken_images: list[str]
    screenshot: Path


def load_page(path: Path, screenshot: Path) -> PageCheck:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for tool in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(tool), f"{tool} missing: run scripts/setup.sh (apt-get chromium)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tempfile.mkdtemp(prefix='chromium_')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(Path(path).resolve().as_uri())
        metrics = driver.execute_script(
            "const out = {}; document.querySelectorAll('[data-metric]')"
            ".forEach(e => { out[e.dataset.metric] = e.textContent.trim(); }); return out;")
        broken = driver.execute_script(
            "return Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
            ".map(i => i.alt);")
        height = driver.execute_script("return document.documentElement.scrollHeight;")
        driver.set_window_size(1280, min(int(height), 16000))
        driver.save_screenshot(str(screenshot))
        console = [(e["level"], e["message"]) for e in driver.get_log("browser")]
    finally:
        driver.quit()
    return PageCheck(console, metrics, broken, Path(screenshot))
