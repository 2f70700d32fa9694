"""The live page's browser tests on the browser ``coe view``'s tests use (``benchmarks/_browser.py``:
Debian's ``chromium`` and ``chromium-driver`` driven by Selenium): where they are missing the
tests skip and say what to install; under CI=true they fail instead (CI installs them:
``.ci/run``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from _browser import chrome, console, find_browser

IN_CI = os.environ.get("CI", "").lower() == "true"


@contextmanager
def chromium(width: int = 1280, height: int = 1000) -> Iterator[Any]:
    """A headless Chromium (a Selenium ``WebDriver``) that keeps the page's console log, or a skip
    (a failure under CI) naming what is missing."""
    found = find_browser()
    if isinstance(found, str):
        if IN_CI:
            pytest.fail(f"the live page's browser tests need Chromium (CI=true): {found}")
        pytest.skip(found)
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")
    with chrome(width, height) as driver:
        yield driver


def console_errors(driver: Any) -> list[str]:
    """The page's console errors (and failed loads) since the last call."""
    return console(driver, "SEVERE")


def wait_until(driver: Any, condition: Callable[[Any], Any], message: str, timeout: float = 60.0) -> Any:
    """``condition(driver)`` once it is truthy; a failure naming ``message`` after ``timeout``."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    waiting = WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,))
    return waiting.until(condition, message)


def screenshot(driver: Any, name: str, elsewhere: Path) -> Path:
    """Save the page as ``name`` (PNG) in the folder ``COE_SCREENSHOTS`` names (``docs`` refreshes
    the README's pictures, as for ``coe view``'s tests), else in ``elsewhere``."""
    folder = Path(os.environ.get("COE_SCREENSHOTS") or elsewhere)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    assert driver.save_screenshot(str(path)), f"no screenshot saved to {path}"
    return path


__all__ = ["IN_CI", "chromium", "console_errors", "screenshot", "wait_until"]
