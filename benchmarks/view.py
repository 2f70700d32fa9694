"""``coe view`` on a whole-split run (MMLU-Pro's 12,032 questions × 6 recorded experts, every
baseline), measured in a real headless Chromium: how soon the run page shows, and how soon a
question opens.

    python benchmarks/view.py                    # make the run (a few minutes), print the figures
    python benchmarks/view.py --run DIR          # an existing run of that command
    python benchmarks/view.py --write            # also write benchmarks/results/view.json

The run is ``coe eval mmlu_pro --pool pools/replay-small --aggregator majority --baselines
--whole-split``. ``coe view`` is started as its own process; times are the page's own
(``performance``: the Paint Timing API's first contentful paint, and marks the page sets the frame
after it has drawn the run's figures, a page of the question browser, or a question):

- cold: the page opened as soon as the viewer answers, while it is still reading results.jsonl;
- warm: the page loaded again (``--loads`` times; median and slowest);
- open a question: a row of the list clicked, until the question is on screen (``--opens``
  rows over several pages and filters; median, 90th percentile, slowest);
- filter: a filter changed, until the narrowed page is on screen;
- what the browser was sent for the run page, against the size of results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _browser import Viewer, chrome, console

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "view.json"
EVAL = ("eval", "mmlu_pro", "--pool", "pools/replay-small", "--aggregator", "majority", "--baselines", "--whole-split")
WAIT_S = 120
FILTERS = ("", "outcome=wrong", "outcome=wrong&disagree=true", "category=law", "method=symbolic&outcome=right")


def make_run(out: Path) -> Path:
    print(f"making the run: coe {' '.join(EVAL)} --out {out}", file=sys.stderr)
    env = {**os.environ, "COE_RUNS_DIR": str(out.parent / "coe-runs")}
    subprocess.run([sys.executable, "-m", "orchestrator.cli", *EVAL, "--out", str(out)], cwd=ROOT, env=env, check=True)
    return out


def wait_mark(driver: Any, name: str, after: float = 0.0) -> float:
    """The time (ms since the page's navigation began) of the page's last mark ``name`` set
    after ``after``, once there is one."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = driver.execute_script(
            "const m = performance.getEntriesByName(arguments[0], 'mark').filter(e => e.startTime > arguments[1]);"
            "return m.length ? m[m.length - 1].startTime : null;",
            name,
            after,
        )
        if found is not None:
            return float(found)
        time.sleep(0.01)
    raise TimeoutError(f"the page never set {name}")


def load(driver: Any, url: str) -> dict[str, float]:
    """Open ``url`` afresh (a new navigation); its first paint and when the run's figures and the
    first page of questions were on screen (ms)."""
    driver.get("about:blank")
    driver.get(url)
    questions = wait_mark(driver, "coe:questions-shown")
    run = wait_mark(driver, "coe:run-shown")
    paint = driver.execute_script(
        "const p = performance.getEntriesByName('first-contentful-paint'); return p.length ? p[0].startTime : null;"
    )
    sent = driver.execute_script(
        "return performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation'))"
        ".reduce((n, e) => n + (e.encodedBodySize || 0), 0);"
    )
    return {"first_paint_ms": float(paint), "run_shown_ms": run, "questions_shown_ms": questions, "bytes": int(sent)}


def show_list(driver: Any, query: str) -> float:
    """Set the run page's filters in the address (as its controls do); ms until the narrowed page
    of questions is on screen."""
    started = driver.execute_script(
        "const t = performance.now(); const base = location.hash.split('?')[0].split('/q/')[0];"
        "location.hash = base + (arguments[0] ? '?' + arguments[0] : ''); return t;",
        query,
    )
    return wait_mark(driver, "coe:questions-shown", started) - started


def open_questions(driver: Any, url: str, opens: int) -> list[float]:
    """Click rows of the question list (a few per filter, spread over its first page) and time
    each until the question is on screen (ms)."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    wait_mark(driver, "coe:questions-shown")
    times: list[float] = []
    per_filter = max(1, opens // len(FILTERS))
    for query in FILTERS:
        for i in range(per_filter):
            show_list(driver, query + ("&" if query else "") + f"offset={50 * i}")
            rows = driver.find_elements(By.CSS_SELECTOR, "#question-list tbody a")
            row = rows[(i * 7) % len(rows)]
            clicked = driver.execute_script("const t = performance.now(); arguments[0].click(); return t;", row)
            shown = wait_mark(driver, "coe:question-shown", clicked)
            driver.find_element(By.ID, "expert-answers")
            times.append(shown - clicked)
    return times


def filter_times(driver: Any, url: str) -> list[float]:
    """Change the filters (the address, as the controls do) and time each narrowed page (ms)."""
    driver.get(url)
    wait_mark(driver, "coe:questions-shown")
    return [show_list(driver, query) for query in (*FILTERS[1:], "outcome=right&offset=500", FILTERS[0])]


def spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(values),
        "median": round(statistics.median(values), 1),
        "p90": round(ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))], 1),
        "max": round(max(values), 1),
    }


def measure(run: Path, loads: int, opens: int) -> dict[str, Any]:
    from eval.results import RESULTS_FILE, read_run
    from orchestrator.view.index import RunIndex

    info = read_run(run)
    started = time.perf_counter()
    index = RunIndex.build(run, info)
    index_s = time.perf_counter() - started
    results_mb = (run / RESULTS_FILE).stat().st_size / 1e6
    experts = max(row.experts for row in index.rows)
    with chrome(1280, 1000) as driver, Viewer([run]) as viewer:  # the browser first: cold is cold
        url = f"{viewer.url}#/run/{run.resolve().name}"
        cold = load(driver, url)
        cold["viewer_start_to_questions_s"] = round(time.monotonic() - viewer.started_at, 2)
        warm = [load(driver, url) for _ in range(loads)]
        opened = open_questions(driver, url, opens)
        filtered = filter_times(driver, url)
        errors = console(driver)
        version = driver.capabilities.get("browserVersion", "")
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "browser": f"headless Chromium {version}",
        "run": {
            "command": f"coe {' '.join(EVAL)}",
            "questions": info.questions,
            "answers": len(index.rows),
            "experts": experts,
            "methods": len(index.methods),
            "results_jsonl_mb": round(results_mb, 1),
        },
        "index_build_s": round(index_s, 2),
        "cold": {k: round(v, 1) if isinstance(v, float) else v for k, v in cold.items()},
        "warm": {
            "loads": loads,
            "first_paint_ms": spread([w["first_paint_ms"] for w in warm]),
            "run_shown_ms": spread([w["run_shown_ms"] for w in warm]),
            "questions_shown_ms": spread([w["questions_shown_ms"] for w in warm]),
            "bytes": warm[-1]["bytes"],
        },
        "open_question_ms": spread(opened),
        "filter_ms": spread(filtered),
        "sent": f"{warm[-1]['bytes'] / 1e3:.0f} kB sent for the run page; results.jsonl {results_mb:.0f} MB",
        "console_errors": len(errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="A run made by the command above (default: make one).")
    parser.add_argument("--loads", type=int, default=5, help="Warm loads of the run page.")
    parser.add_argument("--opens", type=int, default=20, help="Questions opened.")
    parser.add_argument("--write", action="store_true", help=f"Write {RESULTS.relative_to(ROOT)}.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coe-view-bench-") as tmp:
        run = args.run or make_run(Path(tmp) / "whole-split")
        figures = measure(run, args.loads, args.opens)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.write:
        RESULTS.write_text(text + "\n")
        print(f"wrote {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
