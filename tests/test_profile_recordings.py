"""``coe profile`` refuses a pool whose replay expert names a model its recordings file never
recorded (a typo, another file): one line naming the missing model and the models the file has,
before any work, and nothing written to the pool."""

from __future__ import annotations

from pathlib import Path

import pytest
import userbench

from common.errors import NotFound
from eval import load_benchmark
from orchestrator import Orchestrator, load_settings
from orchestrator.cli import main
from orchestrator.profiling import profile_pool


@pytest.fixture
def made(tmp_path: Path) -> dict[str, Path]:
    """The user benchmark and its replay pool, with the guesser's recorded model misnamed."""
    spec = userbench.write_benchmark(tmp_path / "bench", 20)
    pool = userbench.write_replay_pool(tmp_path / "pool", 20)
    toml = (pool / "pool.toml").read_text()
    assert toml.count('model = "guesser"') == 1
    (pool / "pool.toml").write_text(toml.replace('model = "guesser"', 'model = "Guesser-70B"'))
    return {"spec": spec, "pool": pool}


def expected(pool: Path) -> str:
    return (
        f"replay file {pool / 'recordings.jsonl'} has no records of 'Guesser-70B' (expert guesser); "
        "it records: adder, guesser, multiplier"
    )


def test_profile_pool_names_the_missing_model(made: dict[str, Path]) -> None:
    bench = load_benchmark(made["spec"])
    coe = Orchestrator(load_settings(pool=made["pool"]))
    with pytest.raises(NotFound) as info:
        profile_pool(coe, bench.questions(Path("."), None), embedder="hashing-64", benchmark=bench)
    assert str(info.value) == expected(made["pool"])
    assert sorted(p.name for p in made["pool"].iterdir()) == ["pool.toml", "recordings.jsonl"]


def test_coe_profile_is_one_line(made: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["profile", "-b", str(made["spec"]), "--pool", str(made["pool"]), "--no-classifier"])
    assert done.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("coe: ")]
    assert err == [f"coe: error: {expected(made['pool'])}"]
    assert sorted(p.name for p in made["pool"].iterdir()) == ["pool.toml", "recordings.jsonl"]
