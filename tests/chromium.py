"""Headless Chromium for the tests that look at a page (the docs site, the benchmark report):
Debian's /usr/bin/chromium driven by /usr/bin/chromedriver through selenium, offline.

Without Chromium, chromedriver or selenium the caller skips saying why; in CI (``CI=true``)
it fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from helpers import IN_CI

CHROMIUM = Path(os.environ.get("LOSSATLAS_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("LOSSATLAS_CHROMEDRIVER", "/usr/bin/chromedriver"))
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,1400",
]


def unavailable(why: str) -> None:
    """Skip locally, fail in CI (as tests/helpers.py require_parity_dir)."""
    if IN_CI:
        pytest.fail(f"{why}; CI requires it (CI is set)", pytrace=False)
    pytest.skip(why)


def require_chromium() -> None:
    """Skip (fail in CI) unless Chromium, chromedriver and selenium are there."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        unavailable(f"{' and '.join(missing)} not found: apt-get install chromium chromium-driver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        unavailable("selenium is not installed (pip install -e '.[test]')")


@contextmanager
def chromium(window: str = "1280,1400") -> Iterator[Any]:
    """A headless Chromium (selenium driver) with browser and network logs, in a fresh profile."""
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="lossatlas-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    flags = [f for f in CHROMIUM_FLAGS if not f.startswith("--window-size=")] + [f"--window-size={window}"]
    for flag in [*flags, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for a driver online
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def requested_urls(driver: Any) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls
