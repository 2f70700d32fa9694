"""A real headless Chromium for the browser tests: Debian's ``chromium`` and ``chromium-driver``,
driven by Selenium. Where they are missing the tests skip and say what to install; under CI=true
they fail instead (CI installs them: ``.ci/run``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
BROWSERS = ("chromium", "chromium-browser")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs"
"""Where ``screenshot`` writes when ``COE_SCREENSHOTS=1`` (the README shows them)."""


def _missing(what: str, how: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"{what} is missing (CI=true): {how}")
    pytest.skip(f"{what} is not installed here: {how}")


def chromium_paths() -> tuple[str, str]:
    """The browser and its driver, or a skip (a failure under CI) naming what to install."""
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        _missing("chromium or chromium-driver", "sudo apt-get install -y chromium chromium-driver")
    return browser, driver


@contextmanager
def chromium(width: int = 1280, height: int = 1000) -> Iterator[Any]:
    """A headless Chromium (a Selenium ``WebDriver``) that keeps the page's console log."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium", "pip install selenium (the test extra)")
    browser, driver = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"):
        options.add_argument(argument)  # --no-sandbox: CI runs as root
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    made = webdriver.Chrome(options=options, service=Service(driver))
    try:
        yield made
    finally:
        made.quit()


def console_errors(driver: Any) -> list[str]:
    """The page's console errors (and failed loads) since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def wait_until(driver: Any, condition: Callable[[Any], Any], message: str, timeout: float = 60.0) -> Any:
    """``condition(driver)`` once it is truthy; a failure naming ``message`` after ``timeout``."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    waiting = WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,))
    return waiting.until(condition, message)


def screenshot(driver: Any, name: str, elsewhere: Path) -> Path:
    """Save the page as ``name`` (PNG): in ``docs/`` with ``COE_SCREENSHOTS=1`` (to refresh the
    README's pictures), else in ``elsewhere``."""
    folder = SCREENSHOTS if os.environ.get("COE_SCREENSHOTS") == "1" else elsewhere
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    assert driver.save_screenshot(str(path)), f"no screenshot saved to {path}"
    return path


__all__ = ["IN_CI", "chromium", "chromium_paths", "console_errors", "screenshot", "wait_until"]
