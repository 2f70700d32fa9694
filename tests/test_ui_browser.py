"""The live page in a real headless Chromium (``tests/browser.py``), on ``coe serve`` with the
replay pool (recorded answers of six real models; votes, so no live model) behind an API key:
the page opened with the key (HTTP Basic, as a browser sends it) shows a request made during the
test, its trace, the models and the traffic; the playground answers a question of the replay pool
as ``POST /v1/answer`` does, showing its steps as they come; the page logs no console error; and
without the key, or with a wrong one, the page shows nothing. The screenshot in the README is
this test's (``COE_SCREENSHOTS=docs`` writes it there)."""

from __future__ import annotations

import httpx
import pytest

from eval import load_benchmark
from orchestrator import load_settings
from orchestrator.pools.settings import shipped_pool
from orchestrator.service import ServiceSettings, create_app
from tests.browser import chromium, console_errors, screenshot, wait_until
from tests.live_server import serving

KEY = "key-of-the-browser-tests"
ASKED = {"policy": "topk", "k": 3, "aggregation": "majority"}

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def served(data_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui-browser")
    keys = tmp / "keys.txt"
    keys.write_text(KEY + "\n")
    core = load_settings(pool=shipped_pool("replay-small"), data_dir=data_dir, runs_dir=tmp / "runs")
    # lazy: the warm-up would load the pool's live aggregator, which votes never need
    settings = ServiceSettings(core=core, api_keys_file=keys, lazy=True)
    items = load_benchmark("mmlu_pro").questions(data_dir, "test")[:2]
    with serving(create_app(settings)) as url:
        yield url, items


def page(url: str, key: str) -> str:
    return url.replace("http://", f"http://coe:{key}@") + "/ui"


def test_the_live_page_shows_a_request_and_the_playground_answers(served, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url, (first, second) = served
    body = {"question": first.text, "options": list(first.options), "id": first.id, **ASKED}
    asked = httpx.post(f"{url}/v1/answer", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
    assert asked.status_code == 200, asked.text
    expected = asked.json()

    with chromium(height=2300) as browser:
        browser.get(page(url, KEY))
        row = wait_until(
            browser,
            lambda b: next((r for r in b.find_elements(By.CSS_SELECTOR, "#recent tbody tr")), None),
            "the request made during the test is listed",
        )
        assert first.text.split()[0] in row.text and expected["choice"] in row.text
        models = {
            r.get_attribute("data-model"): r.text
            for r in browser.find_elements(By.CSS_SELECTOR, "#models tr[data-model]")
        }
        assert set(models) == {*expected_experts(), "smollm2"}
        for expert in expected_experts():
            assert "loaded" in models[expert]  # replay engines stay loaded after the request
        wait_until(browser, lambda b: float(b.find_element(By.ID, "rps").text or 0) > 0, "requests per second shown")
        assert "1 answered" in browser.find_element(By.ID, "answered").text

        row.click()  # its trace
        experts = wait_until(
            browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#detail-body tr[data-expert]"), "the trace opens"
        )
        assert sorted(e.get_attribute("data-expert") for e in experts) == sorted(
            e["expert"] for e in expected["trace"]["experts"]
        )
        assert f"({expected['choice']})" in browser.find_element(By.CSS_SELECTOR, "#detail-body .answer").text

        browser.find_element(By.ID, "question").send_keys(second.text)
        browser.find_element(By.ID, "options").send_keys("\n".join(second.options))
        Select(browser.find_element(By.ID, "policy")).select_by_value("topk")
        browser.find_element(By.ID, "k").clear()
        browser.find_element(By.ID, "k").send_keys("3")
        Select(browser.find_element(By.ID, "aggregation")).select_by_value("majority")
        browser.find_element(By.ID, "ask-button").click()
        answer = wait_until(
            browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#result .answer"), "the playground answers"
        )
        steps = [li.get_attribute("data-kind") for li in browser.find_elements(By.CSS_SELECTOR, "#timeline li")]
        assert steps[:2] == ["queued", "started"] and "step" in steps and steps[-1] == "answer"
        timeline = browser.find_element(By.ID, "timeline").text
        assert "routed in" in timeline and "generated" in timeline
        same = {"question": second.text, "options": list(second.options), **ASKED}
        reference = httpx.post(f"{url}/v1/answer", json=same, headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
        assert f"({reference.json()['choice']})" in answer[0].text  # the playground's answer is the API's
        wait_until(
            browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#recent tbody tr")) >= 3, "every answer is listed"
        )
        assert console_errors(browser) == []
        shot = screenshot(browser, "ui.png", tmp_path)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_live_page_shows_nothing_without_the_key(served):
    from selenium.webdriver.common.by import By

    url, _ = served
    with chromium() as browser:
        for address in (url + "/ui", page(url, "wrong-key")):
            browser.get(address)
            assert browser.find_elements(By.ID, "models") == [], address
            assert KEY not in browser.page_source
    assert httpx.get(f"{url}/ui/api/live", auth=("coe", "wrong-key")).status_code == 401
    assert httpx.get(f"{url}/ui/api/live", auth=("coe", KEY)).status_code == 200


def expected_experts() -> list[str]:
    from orchestrator import load_pool

    return list(load_pool(shipped_pool("replay-small"), load_settings().data_dir).expert_names)
