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
    """``orchestrator.pipeline.task_ids`` alone spells a task id: a second copy of the format (a literal
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


ROOMS = {
    "stores": 0,
    "pools": 1,
    "executors": 2,
    "pipeline": 3,
    "sdk": 4,
    "remote": 4,
    "jobs": 5,
    "workflows": 6,
    "service": 7,
    "view": 7,
    "cli": 8,
}
"""orchestrator's rooms, lowest first: a room imports only rooms below it (and the packages)."""


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "orchestrator" and len(parts) > 1 else None


def room_arrows_up(root: Path) -> list[str]:
    """Every import from one room of orchestrator/ into a room at its level or above."""
    out = []
    for path in sorted((root / "orchestrator").rglob("*.py")):
        here = _room(".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__"))
        if here is None:
            continue  # the package's own surface: names loaded on first use
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                there = _room(name)
                if there is not None and there != here and ROOMS.get(there, 99) >= ROOMS.get(here, -1):
                    out.append(f"{path.relative_to(root)}:{node.lineno} {here} -> {there} ({name})")
    return out


def import_circles(root: Path) -> list[list[str]]:
    """Modules that import each other (through any chain), every import counted."""
    files = [p for package in PACKAGES for p in sorted((root / package).rglob("*.py"))]
    modules = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p for p in files}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for name in names:
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name and name != module and modules[name].name != "__init__.py":
                    graph[module].add(name)
    reach = {m: set(edges) for m, edges in graph.items()}
    changed = True
    while changed:
        changed = False
        for out in reach.values():
            more = set().union(*(reach[x] for x in out)) - out if out else set()
            if more:
                out |= more
                changed = True
    return sorted({tuple(sorted(n for n in reach if m in reach[n] and n in reach[m])) for m in reach if m in reach[m]})


def test_rooms_import_only_rooms_below():
    assert room_arrows_up(ROOT) == []


def test_no_import_circles():
    assert import_circles(ROOT) == []


@pytest.mark.parametrize(
    ("module", "line", "caught"),
    [
        ("orchestrator/pipeline/planted.py", "from orchestrator.sdk import Orchestrator", True),
        ("orchestrator/stores/planted.py", "from orchestrator.jobs.queue import Job", True),
        ("orchestrator/cli/planted.py", "from orchestrator.service.app import create_app", False),
    ],
)
def test_the_rooms_check_catches_a_planted_arrow(tmp_path, module, line, caught):
    planted = tmp_path / module
    planted.parent.mkdir(parents=True)
    planted.write_text(line + "\n", encoding="utf-8")
    assert bool(room_arrows_up(tmp_path)) is caught


def test_the_circle_check_catches_a_planted_circle(tmp_path):
    for name in PACKAGES:
        (tmp_path / name).mkdir()
    (tmp_path / "eval" / "a.py").write_text("from eval.b import x\n", encoding="utf-8")
    (tmp_path / "eval" / "b.py").write_text("from eval.a import y\n", encoding="utf-8")
    assert import_circles(tmp_path) == [("eval.a", "eval.b")]


LIGHT = """
import sys, time
started = time.process_time()  # CPU time: the machine is shared, wall time counts the others' work
import orchestrator.remote.client
seconds = time.process_time() - started
heavy = sorted(m for m in ("fastapi", "starlette", "vllm", "torch", "numpy", "sklearn") if m in sys.modules)
print(seconds, ",".join(heavy))
"""


def test_the_client_is_light():
    """A machine that only calls a server imports the HTTP client without the server, the engines
    or the numerics: neither FastAPI nor vLLM nor torch, in under 0.3 s (best of three)."""
    import subprocess
    import sys

    runs = []
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", LIGHT], capture_output=True, text=True, cwd=ROOT, check=True)
        seconds, heavy = done.stdout.split()[0], done.stdout.split()[1:]
        runs.append(float(seconds))
        assert heavy == [], heavy
    assert min(runs) < 0.3, runs
