"""Package boundaries of DESIGN.md, read from every module's own imports (nothing is imported).

Forbidden arrows: any package -> orchestrator; router -> batching (routing knows no serving);
batching -> router or eval (serving knows no policy or benchmark); aggregators -> eval
(aggregators parse no benchmark format); common -> any other package (it is the leaf).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("common", "batching", "eval", "skills", "router", "aggregators", "orchestrator")

FORBIDDEN: dict[str, dict[str, str]] = {
    "common": {p: "the leaf imports no package" for p in PACKAGES if p != "common"},
    "batching": {
        "orchestrator": "packages never import the SDK layer",
        "router": "serving knows no routing policy",
        "eval": "serving knows no benchmark",
    },
    "router": {"orchestrator": "packages never import the SDK layer", "batching": "routing knows no serving"},
    "aggregators": {
        "orchestrator": "packages never import the SDK layer",
        "eval": "aggregators parse no benchmark format",
    },
    "skills": {"orchestrator": "packages never import the SDK layer"},
    "eval": {"orchestrator": "packages never import the SDK layer"},
    "orchestrator": {},
}


def imported_packages(source: str, package: str) -> list[tuple[int, str]]:
    """(line, top-level package) of every import in ``source``; relative imports stay in ``package``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, package if node.level else (node.module or "").split(".")[0]))
    return found


def violations(root: Path) -> list[str]:
    """Every forbidden import under ``root``, as ``file:line imports X (why)``."""
    out = []
    for package, rules in FORBIDDEN.items():
        for path in sorted((root / package).rglob("*.py")):
            for line, target in imported_packages(path.read_text(encoding="utf-8"), package):
                if target in rules:
                    out.append(f"{path.relative_to(root)}:{line} imports {target} ({rules[target]})")
    return out


def test_no_forbidden_import():
    assert violations(ROOT) == []


@pytest.mark.parametrize(
    ("package", "line", "caught"),
    [
        ("router", "from batching.plan import make_plan", True),
        ("router", "import batching", True),
        ("batching", "from eval.benchmarks import Question", True),
        ("batching", "    from router import Router  # inside a function", True),
        ("aggregators", "from eval.extract import letter_extractor", True),
        ("common", "from orchestrator import Orchestrator", True),
        ("skills", "from orchestrator.sdk import Orchestrator", True),
        ("router", "from skills import Profile", False),
        ("aggregators", "from common.requests import Generation", False),
    ],
)
def test_the_check_catches_a_planted_import(tmp_path, package, line, caught):
    """The check itself: a copy of the tree with one planted import fails exactly when it should."""
    for name in PACKAGES:
        (tmp_path / name).mkdir()
    planted = tmp_path / package / "planted.py"
    body = f"def f():\n{line}\n" if line.startswith(" ") else f"{line}\n"
    planted.write_text(body, encoding="utf-8")
    found = violations(tmp_path)
    assert bool(found) is caught, found
    if caught:
        assert found[0].startswith(f"{package}/planted.py:")
