"""The registry of engine kinds is the one place a kind is declared: it covers exactly the kinds a
pool file may name, builds each kind's engine, and every capability check asks it."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest

from batching import ExpertSpec, make_engine
from batching.engines import KINDS, engine_kind
from batching.engines.http import HTTPEngine
from batching.engines.replay import ReplayEngine
from batching.spec import Source

ROOT = Path(__file__).resolve().parent.parent


def test_the_registry_covers_every_kind_a_pool_may_name():
    union = typing.get_args(Source)[0]  # Annotated[A | B | C, discriminator]
    named = {typing.get_args(member.model_fields["kind"].annotation)[0] for member in typing.get_args(union)}
    assert set(KINDS) == named
    for name, kind in KINDS.items():
        assert kind.name == name and typing.get_args(kind.source.model_fields["kind"].annotation) == (name,)


@pytest.mark.parametrize(
    ("source", "engine"),
    [
        ({"kind": "replay", "path": "r.jsonl", "model": "m", "benchmark": "mmlu_pro"}, ReplayEngine),
        ({"kind": "http", "base_url": "http://127.0.0.1:9/v1", "model": "m"}, HTTPEngine),
    ],
)
def test_each_kind_builds_its_engine(tmp_path, source, engine):
    spec = ExpertSpec(name="e", source=source)
    assert isinstance(make_engine(spec, cache_dir=tmp_path), engine)
    assert engine_kind(spec) is KINDS[source["kind"]]


def test_recorded_kinds_write_nothing_new():
    for kind in KINDS.values():
        if kind.recorded:
            assert not kind.stream and not kind.logprobs and not kind.local


def test_no_capability_is_decided_by_a_kind_name_outside_the_registry():
    """``x.kind == "replay"`` and the like belong to the registry: elsewhere a new kind would be
    missed. Reading a source's own fields (its path, its model) needs no name test."""
    tested = []
    for package in ("batching", "orchestrator", "router", "aggregators", "skills", "eval", "common"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name in ("kinds.py", "spec.py"):
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Compare) and any(
                    isinstance(c, ast.Constant) and c.value in KINDS for c in node.comparators
                ):
                    left = ast.unparse(node.left)
                    if left.endswith(".kind") and "source" in left:
                        tested.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert tested == []
