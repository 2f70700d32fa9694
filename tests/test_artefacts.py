"""Versioned artefacts: new versions never overwrite, malformed files name file and field."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from common.artefacts import latest, read_model, versions, write_new_version
from common.errors import ConfigError, NotFound


class Thing(BaseModel):
    name: str
    size: int


def test_versions_grow_and_latest(tmp_path):
    assert versions(tmp_path / "none", "thing") == {}
    first = write_new_version(tmp_path, "thing", '{"name": "a", "size": 1}')
    second = write_new_version(tmp_path, "thing", '{"name": "b", "size": 2}')
    (tmp_path / "other.v9.json").write_text("{}")
    assert (first.name, second.name) == ("thing.v1.json", "thing.v2.json")
    assert read_model(first, Thing).name == "a"  # untouched by the second write
    assert latest(tmp_path, "thing", "thing") == second
    with pytest.raises(NotFound, match="no widget in"):
        latest(tmp_path, "widget", "widget")


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "not valid JSON"), ("[1]", "expected a JSON object"), ('{"name": "a", "size": "x"}', "size:")],
)
def test_malformed(tmp_path, text, message):
    path = tmp_path / "thing.v1.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        read_model(path, Thing)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
