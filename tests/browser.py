"""A real headless Chromium (Debian's `chromium` and `chromium-driver`) driven through selenium.

scripts/test.sh installs both where they are missing; a test skips, naming the reason, only where they
cannot be found after that (no apt, no root). Screenshots go to benchmarks/out/screenshots/ (gitignored).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SCREENSHOTS = Path(__file__).resolve().parents[1] / "benchmarks" / "out" / "screenshots"


def _find(*names: str) -> str | None:
    return next((path for name in names if (path := shutil.which(name))), None)


@contextmanager
def chromium(width: int = 1280, height: int = 1600) -> Iterator[object]:
    """A headless Chromium session; skips the test (with why) when Chromium or its driver is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed: run the README's test command (scripts/test.sh), which installs it")
    browser = _find("chromium", "chromium-browser", "google-chrome")
    driver_path = _find("chromedriver", "chromium-driver")
    if browser is None or driver_path is None:
        pytest.skip("Chromium or chromedriver not found; scripts/test.sh installs Debian's chromium and "
                    "chromium-driver where apt-get and root are available, and could not here")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: object, name: str) -> Path:
    """Save the whole page as PNG under benchmarks/out/screenshots/ and return the path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    height = driver.execute_script("return document.documentElement.scrollHeight")  # type: ignore[attr-defined]
    width = driver.execute_script("return document.documentElement.scrollWidth")  # type: ignore[attr-defined]
    driver.set_window_size(max(width, 360), min(max(height, 600), 8000))  # type: ignore[attr-defined]
    driver.save_screenshot(str(path))  # type: ignore[attr-defined]
    return path
