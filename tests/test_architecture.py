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


def private_reaches(root: Path) -> list[str]:
    """Every place a module reaches into another's private members: ``from m import _name`` of
    another module, an import of another package's private module (``pkg._mod``), and
    ``obj._name`` on anything but ``self``/``cls`` or a standard-library module."""
    out = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            here = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            tree = ast.parse(path.read_text(encoding="utf-8"))
            outside: set[str] = set()  # names bound to modules outside the project
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    outside |= {(a.asname or a.name).split(".")[0] for a in node.names if _foreign(a.name)}
                    out += [
                        f"{path.relative_to(root)}:{node.lineno} imports {a.name}"
                        for a in node.names
                        if _private_module(a.name, here)
                    ]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    if _foreign(node.module):
                        outside |= {a.asname or a.name for a in node.names}
                        continue
                    if _private_module(node.module, here):
                        out.append(f"{path.relative_to(root)}:{node.lineno} imports {node.module}")
                    out += [
                        f"{path.relative_to(root)}:{node.lineno} imports {node.module}.{a.name}"
                        for a in node.names
                        if _private(a.name) and node.module != here
                    ]
                elif isinstance(node, ast.Attribute) and _private(node.attr):
                    base = node.value
                    if isinstance(base, ast.Name) and (base.id in ("self", "cls") or base.id in outside):
                        continue
                    out.append(f"{path.relative_to(root)}:{node.lineno} reads {ast.unparse(node)}")
    return out


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _foreign(module: str) -> bool:
    return module.split(".")[0] not in PACKAGES


def _private_module(module: str, here: str) -> bool:
    """A private module (``a._b.c``) imported from outside the package that holds it."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if _private(part) and not here.startswith(".".join(parts[:i]) + "."):
            return True
    return False


def test_no_module_reaches_into_another_s_private_members():
    assert private_reaches(ROOT) == []


@pytest.mark.parametrize(
    ("line", "caught"),
    [
        ("x = coe._pipeline(router, None)", True),
        ("from orchestrator.cli import _settings", True),
        ("from batching.engines._vllm_worker import main", True),
        ("import os\nos._exit(0)", False),
        ("y = self._cache", False),
        ("from orchestrator.sdk import Orchestrator", False),
    ],
)
def test_the_private_check_catches_a_planted_reach(tmp_path, line, caught):
    for name in PACKAGES:
        (tmp_path / name).mkdir()
    (tmp_path / "eval" / "planted.py").write_text(line + "\n", encoding="utf-8")
    found = private_reaches(tmp_path)
    assert bool(found) is caught, found


def test_task_ids_are_built_in_one_place():
    """``orchestrator.task_ids`` alone spells a task id: a second copy of the format (a literal
    "/expert/" or "/aggregate" elsewhere) would drift from it."""
    spelled = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name == "task_ids.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    if "/expert/" in node.value or node.value.endswith("/aggregate"):
                        spelled.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert spelled == []
