"""``coe eval`` on a user's own benchmark written by the test: numeric answers ("2,125"), three
recorded experts with known behaviour (``userbench``), profiled with ``coe profile`` from the
same spec file, evaluated with every baseline, reported, resumed, compared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import userbench

from eval.results import read_results, read_run
from orchestrator.cli import main

QUESTIONS = 40


def coe(*argv: str) -> None:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    assert done.value.code == 0


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("userbench")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("COE_RUNS_DIR", str(tmp / "runs"))
        env.setenv("COE_CACHE_DIR", str(tmp / "cache"))
        spec = userbench.write_benchmark(tmp / "bench", QUESTIONS)
        pool = userbench.write_replay_pool(tmp / "pool", QUESTIONS)
        coe("profile", "-b", str(spec), "--pool", str(pool))
        out = tmp / "out"
        coe("eval", str(spec), "--pool", str(pool), "--aggregator", "majority", "--baselines", "--out", str(out))
        yield {"spec": spec, "pool": pool, "out": out, "tmp": tmp}


def test_every_method_scores_what_the_experts_deserve(made: dict[str, Path]) -> None:
    info, results = read_run(made["out"]), read_results(made["out"])
    rows = {r["qid"]: r for r in userbench.questions(QUESTIONS)}
    assert info.benchmark == "arith" and info.answer_kind == "number"
    assert info.questions == len(results) == QUESTIONS // 2  # the evaluation half
    assert [m.name for m in info.methods] == [
        "ours",
        "single-best",
        "category",
        "random-k",
        "symbolic",
        "all-majority",
        "oracle",
    ]
    assert "all-synthesis" in info.skipped
    for result in results:
        row = rows[result.question_id]
        assert result.gold == row["solution"] and result.category == row["kind"]
        by_expert = {e.expert: e for e in result.experts}
        for name in userbench.EXPERTS:
            # the adder through its recorded pred (a number), the others read from their text
            assert by_expert[name].answer == str(userbench.answer_value(name, row))
            assert by_expert[name].correct == (userbench.answer_value(name, row) == userbench.truth(row))
        methods = result.methods
        assert methods["oracle"].correct  # the adder or the multiplier is always right
        assert methods["category"].correct and methods["category"].experts == (
            "adder" if row["kind"] == "addition" else "multiplier",
        )
        single = methods["single-best"]
        assert single.experts in (("adder",), ("multiplier",))
        assert single.correct == by_expert[single.experts[0]].correct
        assert set(methods["all-majority"].experts) == set(userbench.EXPERTS)
    report = json.loads((made["out"] / "report.json").read_text())
    accuracy = {m["name"]: m["accuracy"] for m in report["methods"]}
    assert accuracy["oracle"] == accuracy["category"] == 1.0
    assert all(0.0 <= a <= accuracy["oracle"] for a in accuracy.values())
    # each expert alone, over its own answers (every one answered every question: all-majority asked it)
    experts = {e["name"]: e for e in report["experts"]}
    assert list(experts) == sorted(userbench.EXPERTS)
    for name in userbench.EXPERTS:
        rights = [
            userbench.answer_value(name, rows[r.question_id]) == userbench.truth(rows[r.question_id]) for r in results
        ]
        assert (experts[name]["correct"], experts[name]["n"], experts[name]["answered"]) == (
            sum(rights),
            len(rights),
            len(rights),
        )
        assert experts[name]["cost_per_answer"] is None
    assert 0 < experts["adder"]["correct"] < len(results)
    # the pool declares no costs: no cost columns, no cost note, no cost plot
    assert report["cost_unit"] == "calls" and all(m["cost_ratio"] is None for m in report["methods"])
    text = (made["out"] / "report.md").read_text()
    assert "## Experts" in text and "cost/question" not in text and "Cost:" not in text
    assert not (made["out"] / "cost.png").exists()


def test_the_router_works_on_one_category(made: dict[str, Path]) -> None:
    """Every item of a spec without a category field is of one category: profiled and routed."""
    tmp = made["tmp"] / "single"
    spec = userbench.write_benchmark(tmp / "bench", QUESTIONS)
    spec.write_text(spec.read_text().replace('category = "kind"\n', ""))
    pool = userbench.write_replay_pool(tmp / "pool", QUESTIONS)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("COE_RUNS_DIR", str(tmp / "runs"))
        env.setenv("COE_CACHE_DIR", str(made["tmp"] / "cache"))
        coe("profile", "-b", str(spec), "--pool", str(pool))
        out = tmp / "out"
        coe(
            "eval",
            str(spec),
            "--pool",
            str(pool),
            "--policy",
            "topk",
            "--k",
            "1",
            "--aggregator",
            "majority",
            "--out",
            str(out),
        )
    results = read_results(out)
    assert {r.category for r in results} == {"arith"}
    assert all("arith" in r.skills for r in results)
    assert all(len(r.methods["ours"].experts) == 1 for r in results)


def test_report_is_rebuilt_from_the_results_alone(made: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    written = (made["out"] / "report.md").read_text()
    (made["out"] / "report.md").unlink()
    coe("report", str(made["out"]))
    assert (made["out"] / "report.md").read_text() == written
    assert (made["out"] / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_same_run_resumed_reuses_everything(made: dict[str, Path]) -> None:
    before = (made["out"] / "results.jsonl").read_text()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("COE_RUNS_DIR", str(made["tmp"] / "runs"))
        env.setenv("COE_CACHE_DIR", str(made["tmp"] / "cache"))
        argv = ["eval", str(made["spec"]), "--pool", str(made["pool"]), "--aggregator", "majority", "--baselines"]
        coe(*argv, "--out", str(made["out"]), "--resume")
    info = read_run(made["out"])
    assert info.generations == 0 and info.reused == QUESTIONS // 2 * len(userbench.EXPERTS)
    assert (made["out"] / "results.jsonl").read_text() == before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "is not empty: use --resume"),
        (("--resume", "--seed", "3"), "holds a different run: seed=0 (now 3)"),
        (("--aggregator", "vote"), "--aggregator must be synthesis, majority or weighted"),
        (("--split", "nope"), "unknown arith split 'nope'"),
        (("--reference", "nope"), "--reference 'nope' is not one of the pool's experts (adder, multiplier, guesser)"),
        (("--resume", "--reference", "guesser"), "holds a different run: reference=None (now 'guesser')"),
    ],
)
def test_bad_eval_input_is_one_line(
    made: dict[str, Path], capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], message: str
) -> None:
    argv = ["eval", str(made["spec"]), "--pool", str(made["pool"]), "--aggregator", "majority", "--baselines"]
    argv += ["--out", str(made["out"])]
    if "--aggregator" in extra:
        argv = argv[:4] + argv[6:]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("COE_RUNS_DIR", str(made["tmp"] / "runs"))
        with pytest.raises(SystemExit) as done:
            main([*argv, *extra])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("coe: error: ") and message in err[0], err


def test_a_named_reference_is_what_ratios_are_against(made: dict[str, Path]) -> None:
    """--reference names the expert accuracy ratios are against (the pool declares no costs: no
    default reference, no cost columns); a name not in the pool is one line, nothing written."""
    base = ["eval", str(made["spec"]), "--pool", str(made["pool"]), "--aggregator", "majority"]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("COE_RUNS_DIR", str(made["tmp"] / "runs"))
        env.setenv("COE_CACHE_DIR", str(made["tmp"] / "cache"))
        wrong = made["tmp"] / "wrong"
        with pytest.raises(SystemExit) as done:
            main([*base, "--reference", "Adder", "--out", str(wrong)])
        assert done.value.code == 2 and not wrong.exists()
        out = made["tmp"] / "named"
        coe(*base, "--reference", "multiplier", "--out", str(out))
    assert read_run(out).cost_reference == "multiplier"
    results = read_results(out)
    report = json.loads((out / "report.json").read_text())
    assert (report["cost_reference"], report["reference_choice"]) == ("multiplier", "given")
    by_expert = [{e.expert: e for e in r.experts} for r in results]
    paired = [
        (r.methods["ours"].correct, own["multiplier"].correct)
        for r, own in zip(results, by_expert)
        if "multiplier" in own
    ]
    assert paired and sum(ref for _, ref in paired)
    ours = next(m for m in report["methods"] if m["name"] == "ours")
    assert ours["accuracy_ratio"] == pytest.approx(sum(hit for hit, _ in paired) / sum(ref for _, ref in paired))
    text = (out / "report.md").read_text()
    assert "Reference expert: multiplier, named with --reference;" in text
    assert "| accuracy ratio |" in text and "cost ratio" not in text
