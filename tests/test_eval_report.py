"""Reports of an evaluation run (eval.report, eval.plots) and the comparison of two runs
(eval.compare), on the synthetic runs of tests/data/eval_runs.toml (hand-computed values there),
and ``coe report`` on the command line."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import pytest

from aggregators import wilson_interval
from common.errors import BadInput, NotFound
from eval import compare, render_comparison, render_markdown, summarise, write_report
from eval.plots import columns, cost_frontier, label_heights
from eval.results import ExpertResult, MethodResult, QuestionResult, RunInfo, read_results, read_run, write_results

DATA = tomllib.loads((Path(__file__).parent / "data" / "eval_runs.toml").read_text(encoding="utf-8"))
PNG = b"\x89PNG\r\n\x1a\n"
EXPERTS = ("e1", "e2", "e3")
# method -> (experts consulted, tokens in, tokens out, seconds); ours' experts come from the row
COSTS = {"ours": (None, 100, 50, 2.0), "single-best": (("e1",), 40, 20, 1.0), "oracle": (EXPERTS, 120, 60, 3.0)}
PRICES = {"e1": 10.0, "e2": 4.0, "e3": 2.0}
"""Declared costs (active parameters) for the runs that have them: ours costs 66 / 6 = 11 per answer in run A."""


def result(row: dict, prices: dict[str, float] | None = None) -> QuestionResult:
    prices = prices or {}
    methods = {}
    for name, (experts, tokens_in, tokens_out, seconds) in COSTS.items():
        consulted = tuple(row["ours"]) if experts is None else experts
        methods[name] = MethodResult(
            experts=consulted,
            final="A" if name in row["right"] else "B",
            correct=name in row["right"],
            aggregation={"ours": "synthesis", "single-best": "single", "oracle": "oracle"}[name],
            tokens_in=row.get("ours_in", tokens_in) if name == "ours" else tokens_in,
            tokens_out=tokens_out,
            seconds=seconds,
            cost=sum(prices.get(e, 0.0) for e in consulted),
        )
    return QuestionResult(
        question_id=row["id"],
        sample=row["sample"],
        benchmark="mmlu_pro",
        category=row["category"],
        gold="A",
        experts=tuple(expert_row(row, e, prices.get(e, 0.0)) for e in EXPERTS),
        methods=methods,
    )


def expert_row(row: dict, expert: str, cost: float) -> ExpertResult:
    if expert in row.get("failed", ()):
        return ExpertResult(expert=expert, error="timed out", correct=False, cost=cost)
    right = expert in row.get("experts_right", EXPERTS if "oracle" in row["right"] else ())
    return ExpertResult(expert=expert, answer="A" if right else "B", correct=right, cost=cost)


def make_run(directory: Path, which: str = "a", prices: dict[str, float] | None = None, **changes) -> Path:
    info = RunInfo.model_validate({**DATA["run"], **changes})
    write_results(directory, info, [result(row, prices) for row in DATA[which]["rows"]])
    return directory


@pytest.fixture
def run_a(tmp_path: Path) -> Path:
    return make_run(tmp_path / "a")


@pytest.fixture
def run_b(tmp_path: Path) -> Path:
    return make_run(tmp_path / "b", "b", run_id="synthetic-b", samples=1)


def test_summary_numbers_by_hand(run_a):
    summary = summarise(read_run(run_a), read_results(run_a))
    assert [m.name for m in summary.methods] == ["ours", "single-best", "oracle"]
    assert (summary.questions, summary.answers, summary.categories) == (3, 6, ["law", "math"])
    ours, single, oracle = summary.methods
    assert (ours.correct, ours.n, single.correct, oracle.correct) == (3, 6, 3, 5)
    assert ours.ci95 == pytest.approx((0.18761, 0.81239), abs=1e-5)
    assert oracle.ci95 == wilson_interval(5, 6)
    assert ours.experts_per_question == 2 and single.experts_per_question == 1 and oracle.experts_per_question == 3
    assert (ours.tokens_in_per_question, ours.tokens_out_per_question) == (120, 50)
    assert (ours.seconds_per_question, oracle.seconds_per_question) == (2.0, 3.0)
    assert {c: (s.correct, s.n) for c, s in ours.per_category.items()} == {"law": (0, 2), "math": (3, 4)}
    assert {c: (s.correct, s.n) for c, s in single.per_category.items()} == {"law": (1, 2), "math": (2, 4)}
    assert {c: s.correct for c, s in oracle.per_category.items()} == {"law": 1, "math": 4}
    assert summary.usage_method == "ours"
    assert summary.usage["math"] == {"e1": 1.0, "e2": 0.75, "e3": 0.25}
    assert summary.usage["law"] == {"e1": 0.0, "e2": 1.0, "e3": 1.0}
    assert (summary.cost.model_loads, summary.cost.generations, summary.cost.reused) == (4, 30, 6)


def test_each_expert_alone_by_hand(run_a, tmp_path):
    """Each expert over its own answers (a failed call is none), from the expert rows alone."""
    summary = summarise(read_run(run_a), read_results(run_a))
    got = {e.name: (e.answered, e.failed, e.correct, e.n) for e in summary.experts}
    assert got == {"e1": (6, 0, 3, 6), "e2": (6, 0, 3, 6), "e3": (5, 1, 2, 5)}
    e3 = summary.experts[2]
    assert e3.accuracy == pytest.approx(0.4) and e3.ci95 == wilson_interval(2, 5) and e3.cost_per_answer is None
    text = render_markdown(summary)
    assert "| expert | answers | accuracy | 95% interval |" in text
    assert (
        "| e1 | 6 | 50.0% (3/6) | 18.8–81.2% |" in text and "| e3 | 5 (1 failed) | 40.0% (2/5) | 11.8–76.9% |" in text
    )
    report = json.loads(summary.model_dump_json())
    assert [(e["name"], e["correct"], e["n"]) for e in report["experts"]] == [("e1", 3, 6), ("e2", 3, 6), ("e3", 2, 5)]
    priced = make_run(tmp_path / "p", prices=PRICES, cost_unit="active_params_b", costs=PRICES, cost_reference="e1")
    summary = summarise(read_run(priced), read_results(priced))
    assert [e.cost_per_answer for e in summary.experts] == [10.0, 4.0, 2.0]
    assert "| expert | answers | accuracy | 95% interval | cost/answer |" in render_markdown(summary)
    assert "| e3 | 5 (1 failed) | 40.0% (2/5) | 11.8–76.9% | 2 |" in render_markdown(summary)


def test_samples_give_mean_and_standard_error(run_a):
    summary = summarise(read_run(run_a), read_results(run_a))
    ours = summary.method("ours").samples
    assert ours is not None
    assert {s: (x.correct, x.n) for s, x in ours.per_sample.items()} == {0: (1, 3), 1: (2, 3)}
    # accuracies 1/3 and 2/3: mean 1/2, standard deviation sqrt(2) / 6, standard error 1/6
    assert ours.mean == pytest.approx(0.5) and ours.standard_error == pytest.approx(1 / 6)
    oracle = summary.method("oracle").samples
    assert oracle is not None and oracle.mean == pytest.approx(5 / 6) and oracle.standard_error == pytest.approx(1 / 6)
    text = render_markdown(summary)
    assert "| ours | 50.0% ± 16.7% | 33.3% | 66.7% |" in text
    single = summarise(read_run(run_a).model_copy(update={"samples": 1}), read_results(run_a))
    assert all(m.samples is None for m in single.methods)
    assert "Accuracy over samples" not in render_markdown(single)


def test_markdown_has_the_tables_and_ends_with_the_cost(run_a):
    text = render_markdown(summarise(read_run(run_a), read_results(run_a)))
    lines = text.splitlines()
    assert lines[0] == "# mmlu_pro (test): pool replay-small, policy topk"
    assert "| **ours** | routed top-2 experts, synthesised | 50.0% (3/6) | 18.8–81.2% | 2.00 | 120 / 50 |" in lines
    assert (
        "| oracle | right when any expert was right (ceiling) | 83.3% (5/6) | 43.6–97.0% | 3.00 | 120 / 60 |" in lines
    )
    assert "| category | answers | ours | single-best | oracle |" in lines
    assert "| law | 2 | 0.0% | 50.0% | 50.0% |" in lines and "| math | 4 | 75.0% | 50.0% | 100.0% |" in lines
    assert "- symbolic: the pool has no profile" in lines
    cost = lines.index("## Cost of this run")
    assert [line for line in lines if line.startswith("## ")][-1] == "## Cost of this run"
    assert "- model loads: 4" in lines[cost:] and "- generations: 30 made, 6 reused from the run's store" in lines
    assert "route 1.5 s, generate 20.2 s, score 0.5 s, total 22.2 s" in text


def test_report_is_deterministic_and_resume_safe(run_a, tmp_path):
    """Twice the same text; a 'resumed' run (other timings, results in another order) differs
    only in the cost section."""
    first = render_markdown(summarise(read_run(run_a), read_results(run_a)))
    assert render_markdown(summarise(read_run(run_a), read_results(run_a))) == first
    resumed = tmp_path / "resumed"
    info = read_run(run_a).model_copy(
        update={"stage_seconds": {"total": 99.0}, "model_loads": 1, "reused": 30, "started": "x", "finished": "y"}
    )
    write_results(resumed, info, list(reversed(read_results(run_a))))
    second = render_markdown(summarise(read_run(resumed), read_results(resumed)))
    assert second != first
    head = "## Cost of this run"
    assert second.split(head)[0] == first.split(head)[0]


def test_write_report_writes_markdown_json_and_pngs(run_a):
    paths = write_report(run_a)
    assert [p.name for p in paths] == ["report.md", "report.json", "frontier.png", "usage.png"]
    assert all(p.parent == run_a and p.is_file() for p in paths)
    assert (run_a / "report.md").read_text(encoding="utf-8").startswith("# mmlu_pro (test)")
    assert json.loads((run_a / "report.json").read_text(encoding="utf-8"))["methods"][0]["correct"] == 3
    for png in paths[2:]:
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 5000
    assert not [p for p in run_a.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_a_report_from_the_results_in_hand_equals_one_rebuilt_from_the_files(run_a):
    write_report(run_a)
    rebuilt = {name: (run_a / name).read_text(encoding="utf-8") for name in ("report.md", "report.json")}
    write_report(run_a, read_run(run_a), read_results(run_a))
    assert {name: (run_a / name).read_text(encoding="utf-8") for name in rebuilt} == rebuilt
    with pytest.raises(BadInput, match="info and results together"):
        write_report(run_a, read_run(run_a))


def test_a_run_without_ours_has_no_usage_plot(tmp_path):
    directory = make_run(tmp_path / "x", methods=DATA["run"]["methods"][1:])
    rows = [
        r.model_copy(update={"methods": {k: v for k, v in r.methods.items() if k != "ours"}})
        for r in read_results(directory)
    ]
    write_results(directory, read_run(directory), rows)
    assert [p.name for p in write_report(directory)] == ["report.md", "report.json", "frontier.png"]


def test_an_empty_run_still_has_a_report(tmp_path):
    """A run killed before its first answer: zero answers, every method at 0/0, no usage plot."""
    directory = make_run(tmp_path / "empty")
    (directory / "results.jsonl").write_text("", encoding="utf-8")
    assert [p.name for p in write_report(directory)] == ["report.md", "report.json", "frontier.png"]
    text = (directory / "report.md").read_text(encoding="utf-8")
    assert (
        "0 of 3 questions evaluated" in text and "| **ours** | routed top-2 experts, synthesised | 0.0% (0/0) |" in text
    )


def test_declared_costs_have_their_columns_note_and_plot(tmp_path):
    run = make_run(tmp_path / "p", prices=PRICES, cost_unit="active_params_b", costs=PRICES, cost_reference="e1")
    summary = summarise(read_run(run), read_results(run))
    assert summary.reference_cost == 10.0
    ours, single, oracle = summary.methods
    assert (ours.cost_per_question, single.cost_per_question, oracle.cost_per_question) == (11.0, 10.0, 16.0)
    assert (ours.cost_ratio, single.cost_ratio, oracle.cost_ratio) == pytest.approx((1.1, 1.0, 1.6))
    text = render_markdown(summary)
    assert "| experts/question | tokens/question (in / out) | cost/question | cost ratio |" in text
    assert "| 120 / 50 | 11 | 1.10 |" in text
    assert "Cost ratio: against the pool's costliest expert alone, e1 (10 per answer)." in text
    assert "cost.png" in [p.name for p in write_report(run)]


def test_accuracy_and_cost_ratios_are_against_the_reference(run_a, tmp_path):
    """The reference: the pool's costliest expert by default, or the one named with --reference;
    a method's accuracy ratio is over the reference's on the answers both gave (e3's call on q3
    sample 1 failed: 5 answers paired, e3 right on 2 of them, ours on 3, the oracle on 5)."""
    costliest = make_run(tmp_path / "c", prices=PRICES, cost_unit="active_params_b", costs=PRICES, cost_reference="e1")
    summary = summarise(read_run(costliest), read_results(costliest))
    assert summary.reference_choice == "costliest"
    assert [m.accuracy_ratio for m in summary.methods] == pytest.approx([1.0, 1.0, 5 / 3])
    text = render_markdown(summary)
    assert "| cost/question | cost ratio | accuracy ratio |" in text and "| 11 | 1.10 | 1.00 |" in text
    assert "Reference expert: e1, the pool's costliest expert; it gave 6 of the 6 answers, 50.0% of them right." in text
    assert "| e1 (reference) | 6 | 50.0% (3/6) |" in text

    given = make_run(tmp_path / "g", prices=PRICES, cost_unit="active_params_b", costs=PRICES, cost_reference="e3")
    summary = summarise(read_run(given), read_results(given))
    assert (summary.reference_choice, summary.reference_cost) == ("given", 2.0)
    assert [m.accuracy_ratio for m in summary.methods] == pytest.approx([1.5, 1.5, 2.5])
    assert [m.cost_ratio for m in summary.methods] == pytest.approx([5.5, 5.0, 8.0])
    text = render_markdown(summary)
    assert "Reference expert: e3, named with --reference; it gave 5 of the 6 answers, 40.0% of them right." in text
    assert "Cost ratio: against the reference alone, e3 (2 per answer)." in text
    assert "| e3 (reference) | 5 (1 failed) |" in text

    ones = dict.fromkeys(EXPERTS, 1.0)
    calls = make_run(tmp_path / "n", prices=ones, cost_unit="calls", costs=ones, cost_reference="e3")
    summary = summarise(read_run(calls), read_results(calls))
    assert summary.reference_choice == "given" and summary.reference_cost is None
    assert [m.accuracy_ratio for m in summary.methods] == pytest.approx([1.5, 1.5, 2.5])
    assert [m.cost_ratio for m in summary.methods] == [None, None, None]
    text = render_markdown(summary)
    assert "| tokens/question (in / out) | accuracy ratio |" in text and "| 120 / 50 | 1.50 |" in text
    assert "cost ratio" not in text and "Cost:" not in text

    summary = summarise(read_run(run_a), read_results(run_a))
    assert summary.reference_choice is None and all(m.accuracy_ratio is None for m in summary.methods)
    text = render_markdown(summary)
    assert "accuracy ratio" not in text
    assert "Reference expert: none (the run recorded no costs, and none was named with --reference)" in text


@pytest.mark.parametrize("unit", ["calls", None])
def test_no_cost_columns_where_the_pool_declares_no_costs(tmp_path, unit):
    """A pool without declared costs counts calls (1 each): that is no cost, so the methods table
    has no cost columns, no cost note, no cost.png; report.json has its cost fields null. A run
    made before costs were recorded (unit None) reads the same."""
    ones = dict.fromkeys(EXPERTS, 1.0)
    run = make_run(tmp_path / "c", prices=ones if unit else None, cost_unit=unit, costs=ones if unit else {})
    assert read_results(run)[0].methods["oracle"].cost == (3.0 if unit else 0.0)
    summary = summarise(read_run(run), read_results(run))
    assert summary.reference_cost is None and not summary.costs_declared
    assert all(m.cost_per_question is None and m.cost_ratio is None for m in summary.methods)
    text = render_markdown(summary)
    assert "| **ours** | routed top-2 experts, synthesised | 50.0% (3/6) | 18.8–81.2% | 2.00 | 120 / 50 |" in text
    assert "cost/question" not in text and "cost ratio" not in text and "Cost:" not in text
    assert [p.name for p in write_report(run)] == ["report.md", "report.json", "frontier.png", "usage.png"]
    report = json.loads((run / "report.json").read_text(encoding="utf-8"))
    assert report["cost_unit"] == unit and report["reference_cost"] is None
    assert all(m["cost_per_question"] is None and m["cost_ratio"] is None for m in report["methods"])


def test_cost_frontier():
    points = [("a", 1.0, 0.5), ("b", 2.0, 0.4), ("c", 2.0, 0.7), ("d", 3.0, 0.7), ("e", 0.5, 0.3)]
    assert cost_frontier(points) == ["e", "a", "c"]


def test_frontier_labels_never_overprint():
    assert columns([1.0, 3.0, 1.02, 16.0, 3.05], near=0.5) == [[0, 2], [1, 4], [3]]
    assert label_heights([50.0, 51.0, 40.0], gap=3.0) == [48.0, 51.0, 40.0]
    assert label_heights([50.0, 50.0, 50.0], gap=2.0) == [50.0, 48.0, 46.0]


def test_bad_inputs(tmp_path, run_a):
    with pytest.raises(NotFound, match="does not exist"):
        write_report(tmp_path / "missing")
    lines = (run_a / "results.jsonl").read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2][:40]
    (run_a / "results.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(BadInput) as caught:
        write_report(run_a)
    assert f"{run_a / 'results.jsonl'}:3: not a question result" in str(caught.value)
    assert "\n" not in str(caught.value)
    twice = tmp_path / "twice"
    write_results(twice, read_run(run_a), [result(DATA["a"]["rows"][0])] * 2)
    with pytest.raises(BadInput, match="question 'q1' sample 0 appears twice"):
        write_report(twice)


def test_compare_by_hand(run_a, run_b):
    c = compare(run_a, run_b)
    assert (c.method, c.only_in_a, c.only_in_b) == ("ours", 1, 1)
    s = c.overall
    assert (s.n, s.a_correct, s.b_correct, s.only_a, s.only_b) == (5, 3, 4, 1, 2)
    assert s.difference == pytest.approx(0.2)
    half = 1.96 * math.sqrt(0.7 / 5)
    assert s.ci95 == pytest.approx((0.2 - half, 0.2 + half))
    math_ = c.per_category["math"]
    assert (math_.n, math_.difference, math_.only_a, math_.only_b) == (4, 0.0, 1, 1)
    assert math_.ci95 == pytest.approx((-1.96 * math.sqrt(2 / 3 / 4), 1.96 * math.sqrt(2 / 3 / 4)))
    assert c.per_category["law"].ci95 == (-1.0, 1.0)  # one pair: nothing known
    text = render_comparison(c)
    assert "| **all** | 5 | 60.0% | 80.0% | +20.0 | -53.3 to +93.3 | 1 | 2 |" in text
    assert "5 answers (question × sample) paired; 1 only in A and 1 only in B" in text
    assert list(c.per_category) == ["law", "math"]
    single = compare(run_a, run_b, "single-best").overall
    assert (single.a_correct, single.b_correct, single.difference) == (3, 0, pytest.approx(-0.6))


def test_compare_bad_inputs(run_a, run_b, tmp_path):
    with pytest.raises(BadInput, match=r"method 'symbolic' is not in run A .*; it has ours, single-best, oracle"):
        compare(run_a, run_b, "symbolic")
    with pytest.raises(NotFound, match="run B: .* does not exist"):
        compare(run_a, tmp_path / "nothing")
    other = make_run(tmp_path / "other", "b")
    write_results(
        other, read_run(other), [r.model_copy(update={"question_id": "z" + r.question_id}) for r in read_results(other)]
    )
    with pytest.raises(BadInput, match="share no question"):
        compare(run_a, other)


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    from orchestrator.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(args)
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err


def test_cli_report_and_compare(run_a, run_b, tmp_path, capsys):
    code, out, err = run_cli(["report", str(run_a)], capsys)
    assert code == 0, err
    assert "| **ours** | routed top-2 experts, synthesised | 50.0% (3/6)" in out
    assert f"wrote {run_a / 'report.md'}" in out and f"wrote {run_a / 'usage.png'}" in out
    code, out, err = run_cli(["report", str(run_a), "--json"], capsys)
    assert code == 0 and json.loads(out)["answers"] == 6
    saved = tmp_path / "cmp.md"
    code, out, err = run_cli(["report", str(run_a), str(run_b), "--out", str(saved)], capsys)
    assert code == 0 and "| **all** | 5 | 60.0% | 80.0% | +20.0 |" in out
    assert saved.read_text(encoding="utf-8") == out
    code, out, err = run_cli(["report", str(run_a), str(run_b), "--method", "oracle", "--json"], capsys)
    assert code == 0 and json.loads(out)["method"] == "oracle"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "{tmp}/missing"], "missing does not exist"),
        (["report", "{a}", "{b}", "--method", "nope"], "method 'nope' is not in run A"),
        (["report", "{a}", "--method", "ours"], "--method and --out are for comparing two runs"),
        (["report", "{a}", "{b}", "{a}"], "give one run folder (its report) or two"),
        (["report"], "Missing argument"),
    ],
)
def test_cli_errors_are_one_line(args, message, run_a, run_b, tmp_path, capsys):
    args = [a.format(tmp=tmp_path, a=run_a, b=run_b) for a in args]
    code, out, err = run_cli(args, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("coe: error: ") and message in err
