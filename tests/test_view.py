"""``coe view``'s API (orchestrator.view) on real replay runs of ``coe eval`` and one hand-written
synthesis run (tests/view_runs.py): the figures are the report's and ``coe report A B``'s, the
filters narrow and partition the questions, pages join up to the whole list, a question is its
line of results.jsonl, bad requests are one JSON error, and nothing is written into a run."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aggregators import wilson_interval
from common.errors import BadInput, NotFound
from eval import compare, summarise
from eval.plots import cost_frontier
from eval.results import read_results, read_run
from orchestrator.view import Catalogue, ViewSettings, create_app, find_runs
from orchestrator.view.app import STATIC
from orchestrator.view.index import run_judge, voters

pytestmark = pytest.mark.data
ROOT = Path(__file__).resolve().parents[1]


def client(*runs: Path) -> TestClient:
    return TestClient(create_app(ViewSettings(runs=runs, warm=False)), base_url="http://127.0.0.1")


@pytest.fixture(scope="module")
def api(view_runs: dict[str, Path]):
    with client(*view_runs.values()) as c:
        yield c


def get(api: TestClient, url: str, **params: object) -> dict:
    response = api.get(url, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def every_row(api: TestClient, run: str, **filters: object) -> list[dict]:
    """Every row passing ``filters``, page by page (pages of 7: several per run)."""
    rows: list[dict] = []
    while True:
        page = get(api, f"/api/runs/{run}/questions", offset=len(rows), limit=7, **filters)
        rows += page["rows"]
        if len(rows) >= page["total"]:
            assert len(rows) == page["total"]
            return rows
        assert len(page["rows"]) == 7


def test_the_runs_are_listed(api, view_runs):
    runs = get(api, "/api/runs")["runs"]
    assert [r["id"] for r in runs] == list(view_runs)
    small = runs[0]
    assert small["questions"] == 40 and small["pool"] == "replay-small" and "ours" in small["methods"]
    parent = view_runs["small-majority"].parent
    assert find_runs([parent]) == sorted(view_runs.values())
    twice = Catalogue.open([view_runs["synthetic"], parent])  # a run named twice is one run
    assert list(twice.runs) == ["synthetic", "mixed-cascade", "small-majority"]


def test_the_overview_is_the_report(api, view_runs):
    """The figures are eval.report's (accuracy, Wilson intervals, per category and expert) and the
    frontier is eval.plots' rule: no second copy of either."""
    for name in ("small-majority", "mixed-cascade"):
        folder = view_runs[name]
        overview = get(api, f"/api/runs/{name}")
        expected = summarise(read_run(folder), read_results(folder))
        assert overview["summary"] == expected.model_dump(mode="json")
        points = [(m.name, m.experts_per_question, m.accuracy) for m in expected.methods if m.aggregation != "oracle"]
        assert overview["frontier"]["experts"] == cost_frontier(points)
        for method in expected.methods:
            for category, score in method.per_category.items():
                assert tuple(overview["category_intervals"][method.name][category]) == wilson_interval(
                    score.correct, score.n
                )
        assert {e["name"] for e in overview["summary"]["experts"]} == {e.name for e in expected.experts}
    assert get(api, "/api/runs/mixed-cascade")["costs_declared"] is True
    assert get(api, "/api/runs/small-majority")["frontier"]["cost"] == []


def test_per_category_costs_add_up(api, view_runs):
    table = get(api, "/api/runs/mixed-cascade/categories")
    results = read_results(view_runs["mixed-cascade"])
    law = [r for r in results if r.category == "law"]
    cell = table["table"]["law"]["ours"]
    assert cell["answers"] == len(law)
    assert cell["cost"] == pytest.approx(sum(r.methods["ours"].cost for r in law) / len(law))
    assert cell["experts"] == pytest.approx(sum(len(r.methods["ours"].experts) for r in law) / len(law))


def test_filters_narrow_and_partition(api, view_runs):
    results = read_results(view_runs["mixed-cascade"])
    judge = run_judge(read_run(view_runs["mixed-cascade"]))
    everything = every_row(api, "mixed-cascade")
    assert [r["question_id"] for r in everything] == [r.question_id for r in results]
    right, wrong = every_row(api, "mixed-cascade", outcome="right"), every_row(api, "mixed-cascade", outcome="wrong")
    assert len(right) + len(wrong) == len(everything) and right and wrong
    assert all(r["correct"] for r in right) and not any(r["correct"] for r in wrong)
    by_category = [every_row(api, "mixed-cascade", category=c) for c in sorted({r["category"] for r in everything})]
    assert sum(map(len, by_category)) == len(everything) and all(len(c) < len(everything) for c in by_category)

    by_id = {r.question_id: r for r in results}
    disagree = every_row(api, "mixed-cascade", disagree="true")
    for row in everything:  # experts disagree: the method's voters gave answers the judge tells apart
        method = by_id[row["question_id"]].methods["ours"]
        answers = {e.answer for e in by_id[row["question_id"]].experts if e.expert in voters(method)}
        keys = {judge.key(a) for a in answers} - {None}
        assert (row in disagree) == (len(keys) > 1)
    escalated = every_row(api, "mixed-cascade", escalated="true")
    climbed = [r.question_id for r in results if any(s.escalate for s in r.methods["ours"].escalations)]
    assert [r["question_id"] for r in escalated] == climbed and 0 < len(climbed) < len(results)
    narrow = every_row(api, "mixed-cascade", outcome="wrong", disagree="true", escalated="true")
    assert {r["question_id"] for r in narrow} <= {r["question_id"] for r in wrong}
    single = every_row(api, "mixed-cascade", method="single-best")
    assert all(r["experts"] == 1 for r in single)
    assert every_row(api, "mixed-cascade", search=results[3].question_id)[0]["question_id"] == results[3].question_id


def test_skipped_text_and_unscored_answers(api):
    rows = every_row(api, "synthetic")
    assert [r["question_id"] for r in every_row(api, "synthetic", skipped="true")] == ["q-skip"]
    assert [r["question_id"] for r in every_row(api, "synthetic", outcome="unscored")] == ["q-nogold"]
    assert [r["question_id"] for r in every_row(api, "synthetic", disagree="true")] == ["q-text"]
    assert rows[2]["experts_answered"] == 3 and rows[2]["correct"] is None
    detail = get(api, "/api/runs/synthetic/questions/1")
    ours = detail["methods"][0]
    assert ours["text"] == "Weighing the three answers: (C)." and ours["aggregator"] == "agg"
    assert ours["votes"] == [
        {"answer": "C", "count": 2, "experts": ["e2", "e3"]},
        {"answer": "A", "count": 1, "experts": ["e1"]},
    ]
    failed = get(api, "/api/runs/synthetic/questions/2")
    assert failed["experts"][2]["error"] == "timed out" and failed["experts"][2]["key"] is None
    assert failed["methods"][0]["votes"][-1] == {"answer": None, "count": 1, "experts": ["e3"]}
    assert failed["gold"] is None and failed["costs_declared"] is False


def test_a_question_is_its_line_of_results(api, view_runs):
    results = read_results(view_runs["small-majority"])
    for position in (0, 17, len(results) - 1):
        detail = get(api, f"/api/runs/small-majority/questions/{position}")
        result = results[position]
        assert detail["question_id"] == result.question_id and detail["gold"] == result.gold
        assert [e["text"] for e in detail["experts"]] == [e.text for e in result.experts]
        assert [m["name"] for m in detail["methods"]] == list(result.methods)
        for method in detail["methods"]:
            assert method["final"] == result.methods[method["name"]].final
            assert sum(v["count"] for v in method["votes"]) == len(voters(result.methods[method["name"]]))
        assert [s for s, _ in detail["route"]["skills"]] == sorted(result.skills, key=lambda s: -result.skills[s])


def test_two_runs_compare_as_coe_report_does(api, view_runs):
    a, b = view_runs["small-majority"], view_runs["mixed-cascade"]
    page = get(api, "/api/compare", a="small-majority", b="mixed-cascade", limit=500)
    assert page["comparison"] == compare(a, b).model_dump(mode="json")
    overall = page["comparison"]["overall"]
    ways = {
        w: get(api, "/api/compare", a="small-majority", b="mixed-cascade", change=w, limit=500)
        for w in ("gained", "lost", "both right", "both wrong", "changed")
    }
    assert ways["gained"]["total"] == overall["only_b"] and ways["lost"]["total"] == overall["only_a"]
    assert ways["changed"]["total"] == overall["only_a"] + overall["only_b"]
    four = ("gained", "lost", "both right", "both wrong")
    assert sum(ways[w]["total"] for w in four) == page["total"] == overall["n"]
    for row in ways["gained"]["rows"]:
        assert not row["a_correct"] and row["b_correct"] and row["differ"]
    differ = get(api, "/api/compare", a="small-majority", b="mixed-cascade", differ="true", limit=500)
    assert all(r["a_final"] != r["b_final"] for r in differ["rows"]) and differ["total"] >= overall["only_a"]
    first = page["rows"][0]
    for side, run in (("a", "small-majority"), ("b", "mixed-cascade")):
        assert get(api, f"/api/runs/{run}/questions/{first[f'{side}_position']}")["question_id"] == first["question_id"]
    law = get(api, "/api/compare", a="small-majority", b="mixed-cascade", category="law")
    assert law["total"] == page["comparison"]["per_category"]["law"]["n"]


@pytest.mark.parametrize(
    ("url", "status", "says"),
    [
        ("/api/runs/nope", 404, "no run 'nope' here; the runs are small-majority"),
        ("/api/runs/small-majority/questions?method=nope", 422, "method 'nope' is not in this run"),
        ("/api/runs/small-majority/questions?category=cooking", 422, "category 'cooking' is not in this run"),
        ("/api/runs/small-majority/questions?limit=501", 422, "limit: Input should be less than or equal to 500"),
        ("/api/runs/small-majority/questions?outcome=maybe", 422, "outcome: Input should be"),
        ("/api/runs/small-majority/questions?colour=red", 422, "colour: Extra inputs are not permitted"),
        ("/api/runs/small-majority/questions/40", 404, "no question at position 40 (it has 40)"),
        ("/api/runs/small-majority/questions/x", 422, "position: Input should be a valid integer"),
        ("/api/compare?a=small-majority&b=synthetic&method=random-k", 422, "method 'random-k' is not in run B"),
        ("/api/compare?a=small-majority", 422, "b: Field required"),
    ],
)
def test_bad_requests_are_one_json_error(api, url, status, says):
    response = api.get(url)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert says in error["message"] and "\n" not in error["message"] and error["type"]


def test_other_hosts_are_refused(api):
    """A page elsewhere cannot read runs through a DNS name rebound onto 127.0.0.1."""
    assert api.get("/api/runs", headers={"host": "attacker.example"}).status_code == 400
    page = api.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]


def test_a_rewritten_run_is_read_again_and_nothing_is_written(view_runs, tmp_path):
    run = shutil.copytree(view_runs["small-majority"], tmp_path / "copy")
    (run / "report.json").unlink()  # the summary is then rebuilt in memory, never written
    before = {p: p.stat().st_mtime_ns for p in run.iterdir()}
    with client(run) as api:
        assert get(api, "/api/runs/copy")["summary_source"] == "rebuilt"
        assert get(api, "/api/runs/copy/questions")["total"] == 40
        lines = (run / "results.jsonl").read_text().splitlines(keepends=True)
        (run / "results.jsonl").write_text("".join(lines[:10]))
        assert get(api, "/api/runs/copy/questions")["total"] == 10
        assert get(api, "/api/runs/copy")["summary"]["answers"] == 10
        assert get(api, "/api/runs/copy/questions/9")["question_id"] == json.loads(lines[9])["question_id"]
    assert sorted(run.iterdir()) == sorted(before)


def test_folders_that_hold_no_run_are_one_error(tmp_path, view_runs):
    with pytest.raises(NotFound, match="does not exist"):
        find_runs([tmp_path / "missing"])
    with pytest.raises(NotFound, match="no evaluation runs in"):
        find_runs([tmp_path])
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadInput, match="is not a folder"):
        find_runs([tmp_path / "file"])
    broken = shutil.copytree(view_runs["synthetic"], tmp_path / "broken")
    (broken / "run.json").write_text("{}")
    with pytest.raises(BadInput, match="not a run description"):
        Catalogue.open([broken])


def test_the_page_fetches_nothing_from_elsewhere():
    """Every file the page loads is shipped in the package (pyproject's package data), and no
    asset names another site."""
    page = (STATIC / "index.html").read_text()
    loaded = re.findall(r'(?:src|href)="([^"#]+)"', page)
    assert loaded and all(link.startswith("/static/") or link.startswith("data:") for link in loaded)
    for link in loaded:
        assert link.startswith("data:") or (STATIC / link.removeprefix("/static/")).is_file()
    for asset in STATIC.iterdir():
        text = asset.read_text()
        for url in re.findall(r"https?://[^\s\"'`)]+", text):
            assert url == "http://www.w3.org/2000/svg", f"{asset.name} names {url}"
        for imported in re.findall(r'from "\./([^"]+)"', text):
            assert (STATIC / imported).is_file(), f"{asset.name} imports {imported}"
        assert len(text.splitlines()) < 400, asset.name
    assert '"orchestrator.view" = ["static/*"]' in (ROOT / "pyproject.toml").read_text()
