"""Pool files and settings: valid files load, malformed ones give one line naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import ConfigError, NotFound
from orchestrator.pool import load_pool
from orchestrator.settings import PROJECT_ROOT, load_settings, shipped_pool

GOOD = """
[pool]
name = "p"
aggregator = "a"

[[models]]
name = "a"
[models.source]
kind = "vllm"
model = "packaged:smollm2-135m-instruct"

[[models]]
name = "b"
prompt_mode = "completion"
[models.source]
kind = "http"
base_url = "http://127.0.0.1:9/v1"
model = "m"
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "pool.toml").write_text(text)
    return tmp_path


def test_example_pools_load():
    default = load_pool(PROJECT_ROOT / "pools" / "default", Path("/data"))
    assert default.expert_names == ["smollm2", "gemma3"]
    assert default.aggregator.name == "smollm2"
    assert default.spec("gemma3").prompt_mode == "completion"
    small = load_pool(PROJECT_ROOT / "pools" / "replay-small", Path("/data"))
    assert len(small.expert_names) == 6 and "smollm2" not in small.expert_names
    assert str(small.spec("mathstral-7b").source.path) == "/data/replay/mmlu_pro_replay.jsonl.gz"


def test_good_pool(tmp_path):
    pool = load_pool(write(tmp_path, GOOD), Path("/d"))
    assert pool.specs["b"].source.kind == "http"
    assert pool.directory == tmp_path


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('kind = "http"', 'kind = "grpc"'), "models[1].source"),
        (('base_url = "http://127.0.0.1:9/v1"', 'base_url = "ftp://x"'), "models[1].source.base_url"),
        (('aggregator = "a"', 'aggregator = "zzz"'), "'zzz' is not one of the pool's models"),
        (('name = "b"', 'name = "a"'), "repeated: a"),
        (('prompt_mode = "completion"', 'prompt_mode = "poetry"'), "models[1].prompt_mode"),
        (('name = "p"', 'name = "p"\ncolour = "red"'), "pool.colour"),
        (("[pool]", "[pool"), "not valid TOML"),
        (
            (
                'kind = "vllm"\nmodel = "packaged:smollm2-135m-instruct"',
                'kind = "replay"\npath = "r.jsonl"\nmodel = "L-70B"\nbenchmark = "mmlu_pro"',
            ),
            "the aggregator 'a' replays recorded answers of 'L-70B' and cannot write new text: "
            "the aggregator must be a model that generates (kind vllm or http)",
        ),
    ],
)
def test_malformed_pool_names_file_and_field(tmp_path, change, expected):
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as info:
        load_pool(path, Path("/d"))
    message = str(info.value)
    assert str(path / "pool.toml") in message
    assert expected in message
    assert "\n" not in message


def test_missing_pool(tmp_path):
    with pytest.raises(NotFound, match="does not exist"):
        load_pool(tmp_path / "nope", Path("/d"))


def test_unknown_expert_suggests(tmp_path):
    pool = load_pool(write(tmp_path, GOOD), Path("/d"))
    with pytest.raises(NotFound, match="did you mean 'a'"):
        pool.spec("aa")


def test_settings_env_and_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("COE_CACHE_DIR", str(tmp_path))
    assert load_settings().cache_dir == tmp_path
    assert load_settings(cache_dir=tmp_path / "x").cache_dir == tmp_path / "x"
    monkeypatch.setenv("COE_LOG_LEVEL", "LOUD")
    with pytest.raises(ConfigError, match=r"log_level \(from COE_LOG_LEVEL\)"):
        load_settings()
    with pytest.raises(ConfigError, match=r"log_level \(from COE_LOG_LEVEL\)"):
        load_settings(log_level=None, pool=None)  # the CLI passes None for options not given


def test_settings_bounds():
    with pytest.raises(ConfigError, match="k"):
        load_settings(k=0)
    with pytest.raises(ConfigError, match="colour: Extra inputs"):
        load_settings(colour="red")


def test_settings_expand_home_in_every_path(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("COE_CACHE_DIR", "~/cache")
    settings = load_settings(data_dir="~/data", runs_dir="~/runs", pool="~/pool")
    assert settings.cache_dir == tmp_path / "cache" and settings.data_dir == tmp_path / "data"
    assert settings.runs_dir == tmp_path / "runs" and settings.pool == tmp_path / "pool"
    assert settings.embeddings_dir == tmp_path / "cache" / "embeddings"


def test_settings_errors_say_where_a_value_came_from(monkeypatch, tmp_path):
    monkeypatch.setenv("COE_POOL", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_settings(cache_dir=tmp_path)
    assert str(info.value) == f"settings: Value error, cache_dir and pool are the same folder ({tmp_path})"
    monkeypatch.delenv("COE_POOL")
    with pytest.raises(ConfigError, match=r"^settings: k: Input should be greater than or equal to 1$"):
        load_settings(k=0)


def test_settings_module_is_the_only_reader_of_coe_variables_and_the_project_root():
    """Packages get paths as arguments; only orchestrator/settings.py reads COE_* or finds the project."""
    offenders = []
    for package in ("common", "batching", "eval", "skills", "router", "aggregators", "orchestrator"):
        for path in (PROJECT_ROOT / package).rglob("*.py"):
            if path == PROJECT_ROOT / "orchestrator" / "settings.py":
                continue
            text = path.read_text(encoding="utf-8")
            if '"COE_' in text or "'COE_" in text or "__file__" in text:
                offenders.append(str(path.relative_to(PROJECT_ROOT)))
    assert offenders == []
    assert shipped_pool("replay-small") == PROJECT_ROOT / "pools" / "replay-small"


def test_shipped_replay_pool_holds_no_pickle():
    from orchestrator.artefacts import PoolArtefacts

    pool = shipped_pool("replay-small")
    assert PoolArtefacts(pool).pickles() == []
    assert not [p for p in pool.rglob("*") if p.suffix in {".joblib", ".pkl", ".pickle", ".npy", ".npz"}]
    assert PoolArtefacts(pool).latest_classifier().labels[0] == "biology"


def _pool_toml(tmp_path, header: str) -> Path:
    folder = tmp_path / "p"
    folder.mkdir(exist_ok=True)
    models = "".join(
        f'[[models]]\nname = "{n}"\n[models.source]\nkind = "http"\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "{n}"\n'
        for n in ("big", "small")
    )
    (folder / "pool.toml").write_text(f'[pool]\nname = "p"\naggregator = "small"\n{header}\n{models}', encoding="utf-8")
    return folder


def test_experts_default_to_every_model_but_the_aggregator(tmp_path):
    from orchestrator.pool import load_pool

    assert load_pool(_pool_toml(tmp_path, ""), tmp_path).expert_names == ["big"]
    both = load_pool(_pool_toml(tmp_path, 'experts = ["big", "small"]'), tmp_path)
    assert both.expert_names == ["big", "small"]


def test_an_empty_experts_list_is_an_error(tmp_path):
    from common.errors import ConfigError
    from orchestrator.pool import load_pool

    with pytest.raises(ConfigError, match=r"pool\.experts: .*at least 1 item"):
        load_pool(_pool_toml(tmp_path, "experts = []"), tmp_path)
