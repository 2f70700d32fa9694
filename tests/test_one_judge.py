"""Every door judges alike. A user's numeric benchmark (spec and recordings written here, answers
in mixed formats, recorded ``correct`` flags made by comparing strings) is profiled, evaluated
and calibrated: one expert's accuracy is the same figure through each door, and the majority
vote counts "7425", "7425.00" and "$7,425.00" as one answer and never lets blanks win."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from eval import load_benchmark
from eval.results import read_results
from orchestrator import Orchestrator, load_settings
from orchestrator.calibrating import calibrate_pool
from orchestrator.cli import main
from orchestrator.evaluation import EvalConfig, evaluate
from orchestrator.profiling import profile_pool
from skills import Profile

N = 30
EXPERTS = ("plain", "dollars", "decimals", "blanker")


def gold(i: int) -> int:
    return 1000 + 137 * i


def stated(model: str, i: int) -> tuple[str | None, str]:
    """(pred, text) of ``model`` on question ``i``: right or wrong by a fixed rule, written its way."""
    value = gold(i)
    if model == "plain":  # right on 4 in 5, as digits
        said = value if i % 5 else value + 1
        return str(said), f"So {said}."
    if model == "dollars":  # right on 9 in 10, as money, in the text only
        said = value if i % 10 != 3 else value - 10
        return None, f"It costs ${said:,}.00 in all. The answer is ${said:,}.00"
    if model == "decimals":  # right on half, with trailing zeros
        said = value if i % 2 else value + 2
        return f"{said}.00", f"The answer is {said}.00"
    blank = i % 3 != 0  # mostly blank, else right
    return ("" if blank else f"{value:,}"), ("I cannot tell." if blank else f"The answer is {value:,}")


def write_case(folder: Path) -> tuple[Path, Path]:
    """The benchmark (data + spec) and a replay pool of the four experts; returns (spec, pool)."""
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "money.jsonl.gz", "wt", encoding="utf-8") as out:
        for i in range(N):
            row = {"id": f"m{i:02d}", "q": f"What do {i + 10} crates cost in total (item {i})?", "a": f"{gold(i):,}"}
            out.write(json.dumps({**row, "topic": "money"}) + "\n")
    spec = folder / "money.toml"
    spec.write_text(
        '[benchmark]\nname = "money"\nversion = "1"\ndata = "money.jsonl.gz"\nanswer_kind = "number"\n'
        '[benchmark.fields]\nid = "id"\nquestion = "q"\nanswer = "a"\ncategory = "topic"\n'
    )
    with (folder / "recordings.jsonl").open("w", encoding="utf-8") as out:
        for i in range(N):
            for model in EXPERTS:
                pred, text = stated(model, i)
                naive = int(pred == f"{gold(i):,}")  # a recorder comparing strings
                record = {"model": model, "question_id": f"m{i:02d}", "text": text, "pred": pred, "correct": naive}
                out.write(json.dumps(record) + "\n")
    pool = folder / "pool"
    pool.mkdir()
    models = "".join(
        f'\n[[models]]\nname = "{m}"\n[models.source]\nkind = "replay"\n'
        f'path = "{folder / "recordings.jsonl"}"\nmodel = "{m}"\nbenchmark = "money"\n'
        for m in EXPERTS
    )
    (pool / "pool.toml").write_text(
        f'[pool]\nname = "money"\naggregator = "writer"\nexperts = {list(EXPERTS)}\n'
        + models
        + '\n[[models]]\nname = "writer"\nmemory_mb = 1000\n[models.source]\nkind = "vllm"\n'
        + 'model = "packaged:smollm2-135m-instruct"\n'
    )
    return spec, pool


@pytest.fixture
def case(tmp_path: Path) -> tuple[Path, Path]:
    return write_case(tmp_path / "money")


def test_one_accuracy_through_every_door(case: tuple[Path, Path], tmp_path: Path) -> None:
    spec, pool = case
    bench = load_benchmark(spec)
    questions = bench.questions(spec.parent)
    settings = load_settings(pool=pool, runs_dir=tmp_path / "runs")
    truth = {
        m: sum(bench.check(q, stated(m, i)[0] or bench.extract(q, stated(m, i)[1])) for i, q in enumerate(questions))
        / N
        for m in EXPERTS
    }
    assert truth["dollars"] == pytest.approx(0.9)  # what a person counts

    report = profile_pool(Orchestrator(settings), questions, embedder="hashing-64", benchmark=bench)
    profile = Profile.model_validate_json(report.profile_path.read_text())
    assert report.relabelled > 0  # the string-comparing recorder's flags are overruled
    by_profile = {m: profile.counts(m).correct / profile.counts(m).n for m in EXPERTS}

    config = EvalConfig(
        benchmark=str(spec),
        split=bench.default_split,
        pool_dir=str(pool),
        policy="all",
        aggregator="majority",
        baselines=True,
    )
    done = evaluate(Orchestrator(settings), bench, questions, config, tmp_path / "out")
    single = [r.methods["single-best"] for r in done.results]
    assert {m.experts for m in single} == {("dollars",)}
    by_eval = sum(bool(m.correct) for m in single) / N
    per_expert = {
        m: sum(bool(e.correct) for r in done.results for e in r.experts if e.expert == m) / N for m in EXPERTS
    }

    calibrated = calibrate_pool(Orchestrator(settings), questions, bench, "topk", min_accuracy=0.5)
    assert calibrated.calibration.target.reference == "dollars"  # the most accurate, by the judge
    by_calibrate = calibrated.calibration.reference_accuracy

    assert round(by_profile["dollars"], 4) == round(by_eval, 4) == round(by_calibrate, 4) == round(truth["dollars"], 4)
    assert {m: round(v, 4) for m, v in by_profile.items()} == {m: round(v, 4) for m, v in per_expert.items()}
    assert {m: round(v, 4) for m, v in per_expert.items()} == {m: round(v, 4) for m, v in truth.items()}


def test_the_majority_counts_what_a_person_would(case: tuple[Path, Path], tmp_path: Path, monkeypatch) -> None:
    spec, pool = case
    monkeypatch.setenv("COE_RUNS_DIR", str(tmp_path / "runs"))
    out = tmp_path / "eval"
    with pytest.raises(SystemExit) as done:
        main(
            [
                "eval",
                str(spec),
                "--pool",
                str(pool),
                "--policy",
                "all",
                "--aggregator",
                "majority",
                "--whole-split",
                "--out",
                str(out),
            ]
        )
    assert done.value.code == 0
    results = {r.question_id: r for r in read_results(out)}
    bench = load_benchmark(spec)
    for i in range(N):
        votes = {}
        for model in EXPERTS:
            pred, text = stated(model, i)
            said = pred if pred is not None else bench.extract(bench.questions(spec.parent)[i], text)
            if said:
                value = float(said.replace(",", "").replace("$", ""))
                votes[value] = votes.get(value, 0) + 1
        top = max(votes.values())
        leaders = [v for v, n in votes.items() if n == top]
        ours = results[f"m{i:02d}"].methods["ours"]
        assert ours.final not in (None, ""), i  # blanks never win
        assert float(ours.final.replace(",", "").replace("$", "")) in leaders, (i, ours.final, votes)
        if len(leaders) == 1:
            assert ours.correct == (leaders[0] == gold(i))
    right = sum(bool(r.methods["ours"].correct) for r in results.values())
    assert right / N >= 0.9  # "7425", "7425.00" and "$7,425.00" vote together for the right amount
