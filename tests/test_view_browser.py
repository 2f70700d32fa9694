"""``coe view`` in a real headless Chromium (Selenium; Debian's chromium and chromium-driver):
the command started as its own process on replay runs of ``coe eval`` loads, the chart answers
the pointer, filters narrow the question list to what the results say, a question opens its
experts' whole answers, two runs compare; the browser's console stays free of errors.

With COE_SCREENSHOTS=DIR the pictures of the README (view-run.png, view-question.png,
view-compare.png) are written to DIR (``COE_SCREENSHOTS=docs``); else to the test's own folder.
Without Chromium the tests are skipped, except under CI=true where that is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _browser import Viewer, chrome, console, find_browser

from eval.results import QuestionResult, read_results

pytestmark = [pytest.mark.browser, pytest.mark.data]
IN_CI = os.environ.get("CI", "").lower() == "true"
WAIT_S = 30


@pytest.fixture(scope="module")
def browser_found() -> None:
    found = find_browser()
    if isinstance(found, str):
        if IN_CI:
            pytest.fail(f"coe view's browser tests need Chromium (CI=true): {found}")
        pytest.skip(found)
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def viewer(view_runs: dict[str, Path], browser_found: None) -> Iterator[Viewer]:
    with Viewer([view_runs["small-majority"], view_runs["mixed-cascade"]]) as served:
        yield served


@pytest.fixture
def browser(viewer: Viewer) -> Iterator[Any]:
    with chrome(1280, 1400) as driver:
        yield driver


@pytest.fixture
def shots(tmp_path: Path) -> Callable[[Any, str], Path]:
    folder = Path(os.environ.get("COE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)

    def shoot(driver: Any, name: str) -> Path:
        path = folder / name
        assert driver.save_screenshot(str(path)), path
        return path

    return shoot


def until(driver: Any, what: Callable[[Any], Any], why: str) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # a list redrawn between finding an element and reading it: ask again
    return WebDriverWait(driver, WAIT_S, ignored_exceptions=[StaleElementReferenceException]).until(what, message=why)


def css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def count_text(driver: Any, element_id: str, starts: str) -> str:
    """The text of a list's count once it reads ``starts...`` (the list has been drawn)."""
    return until(
        driver,
        lambda d: (t := css(d, f"#{element_id}")) and t[0].text.startswith(starts) and t[0].text,
        f"#{element_id} never read {starts!r}",
    )


def choose(driver: Any, name: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    def pick(d: Any) -> bool:
        Select(css(d, f"select[name='{name}']")[0]).select_by_value(value)
        return True

    until(driver, pick, f"cannot choose {value!r} in {name}")


def matching(driver: Any, element_id: str, total: int) -> None:
    """Wait until the list says ``total`` questions match."""
    until(driver, lambda d: f" of {total} matching" in css(d, f"#{element_id}")[0].text, f"{total} never matched")


def no_console_errors(driver: Any) -> None:
    assert console(driver) == [], "the browser's console has errors"


def wrong_of(results: list[QuestionResult], category: str | None = None) -> int:
    return sum(1 for r in results if not r.methods["ours"].correct and category in (None, r.category))


def test_a_run_loads_its_chart_answers_and_filters_narrow(browser, viewer, view_runs, shots):
    from selenium.webdriver.common.action_chains import ActionChains

    results = read_results(view_runs["mixed-cascade"])
    browser.get(viewer.url)
    until(browser, lambda d: len(css(d, "#runs tbody tr")) == 2, "the runs were never listed")
    [link] = [a for a in css(browser, "a.run-link") if a.text == "mixed-cascade"]
    link.click()
    count_text(browser, "question-count", f"1–{len(results)} of {len(results)} matching")
    methods = [r.get_attribute("data-method") for r in css(browser, "#methods tbody tr")]
    assert methods[0] == "ours" and set(methods) == set(results[0].methods)
    assert len(css(browser, "#categories tbody tr")) == len({r.category for r in results})

    points = css(browser, "#chart .point")
    assert {p.get_attribute("data-method") for p in points} == set(methods)
    [symbolic] = [p for p in points if p.get_attribute("data-method") == "symbolic"]
    dot = css(symbolic, "circle.dot")[0]
    ActionChains(browser).move_to_element(dot).perform()
    tip = until(browser, lambda d: (t := css(d, "#chart .tip")) and t[0].is_displayed() and t[0], "no tooltip")
    assert tip.text.startswith("symbolic\n") and "accuracy" in tip.text and "null" not in tip.text
    browser.execute_script("window.scrollTo(0, 0)")
    shots(browser, "view-run.png")

    dot.click()  # the chart picks the method the browser lists
    until(browser, lambda d: "method=symbolic" in d.current_url, "clicking a point picked no method")
    until(  # the list is drawn again for the method picked (the old one's count read "1–" too)
        browser,
        lambda d: (t := css(d, "#question-count")) and t[0].text.startswith("1–") and "method symbolic" in t[0].text,
        "the question list never showed the picked method",
    )
    choose(browser, "method", "ours")
    count_text(browser, "question-count", f"1–{len(results)} of {len(results)} matching · method ours")

    choose(browser, "outcome", "wrong")
    matching(browser, "question-count", wrong_of(results))
    assert 0 < wrong_of(results) < len(results)
    rows = css(browser, "#question-list tbody tr")
    assert len(rows) == wrong_of(results) and all(css(r, ".badge.wrong") for r in rows)
    category = max({r.category for r in results}, key=lambda c: wrong_of(results, c))
    choose(browser, "category", category)
    matching(browser, "question-count", wrong_of(results, category))
    assert wrong_of(results, category) < wrong_of(results)
    css(browser, "a.reset")[0].click()
    matching(browser, "question-count", len(results))
    css(browser, "input[name='escalated']")[0].click()
    climbed = sum(1 for r in results if any(s.escalate for s in r.methods["ours"].escalations))
    matching(browser, "question-count", climbed)
    assert 0 < climbed < len(results)
    no_console_errors(browser)


def test_a_question_opens_its_experts_answers(browser, viewer, view_runs, shots):
    results = read_results(view_runs["mixed-cascade"])
    browser.get(f"{viewer.url}#/run/mixed-cascade?escalated=true")
    count_text(browser, "question-count", "1–")
    first = css(browser, "#question-list tbody tr")[0]
    position = int(first.get_attribute("data-position"))
    css(first, "a")[0].click()
    until(browser, lambda d: css(d, "#expert-answers article"), "the question never opened")
    result = results[position]
    answers = css(browser, "#expert-answers article")
    assert [a.get_attribute("data-expert") for a in answers] == [e.expert for e in result.experts]
    for article, expert in zip(answers, result.experts, strict=True):
        assert css(article, "pre")[0].get_attribute("textContent") == (expert.text or "(no text)")
    assert [r.get_attribute("data-method") for r in css(browser, "#question-methods tbody tr")] == list(result.methods)
    assert "the cascade's rounds" in browser.find_element("css selector", "main").text
    shots(browser, "view-question.png")
    css(browser, "#back")[0].click()
    until(browser, lambda d: "escalated=true" in d.current_url and css(d, "#question-list"), "back lost the filters")
    no_console_errors(browser)


def test_two_runs_compare_question_by_question(browser, viewer, view_runs, shots):
    from eval import compare

    comparison = compare(view_runs["small-majority"], view_runs["mixed-cascade"])
    browser.get(viewer.url)
    until(browser, lambda d: len(css(d, "#runs tbody tr")) == 2, "the runs were never listed")
    button = css(browser, "#compare-button")[0]
    assert not button.is_enabled()
    for box in css(browser, "#runs tbody input[type='checkbox']"):
        box.click()
    assert button.is_enabled()
    button.click()
    headline = until(browser, lambda d: (t := css(d, "#difference")) and t[0].text, "the comparison never showed")
    overall = comparison.overall
    assert f"on {overall.n} paired answers" in headline
    assert f"{overall.only_b} gained" in headline and f"{overall.only_a} lost" in headline
    choose(browser, "change", "changed")
    matching(browser, "pair-count", overall.only_a + overall.only_b)
    browser.execute_script("window.scrollTo(0, 0)")
    shots(browser, "view-compare.png")
    choose(browser, "change", "gained")
    matching(browser, "pair-count", overall.only_b)
    rows = css(browser, "#pairs tbody tr")
    assert len(rows) == overall.only_b > 0 and {r.get_attribute("data-change") for r in rows} == {"gained"}
    css(rows[0], "a")[0].click()
    sides = until(browser, lambda d: len(css(d, "#pair .side")) == 2 and css(d, "#pair .side"), "no side by side")
    assert "A: small-majority" in sides[0].text and "B: mixed-cascade" in sides[1].text
    assert "gained" in css(browser, "#pair-change")[0].text
    no_console_errors(browser)
