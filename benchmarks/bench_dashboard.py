"""The dashboard in headless Chromium on two eval runs of 10,000 cases each.

Measures, from `page.goto` until the app reports its script finished (no skeleton left):
- the compare page's first screen on a fresh server (the first visitor pays for the
  comparison), then in new browser sessions against the warm server (--repeats);
- the review queue's first screen;
- saving a label: the library call (`ws.reviews.add`, --labels of them) and in the browser
  (keyboard shortcut until the page shows "Saved").
Goals (issue 15): first screen of the compare page at most 2 s; a label saved in at most 100 ms.

    bash scripts/chromium.sh && .venv/bin/pip install -c constraints.txt playwright
    .venv/bin/python benchmarks/bench_dashboard.py      # --cases 10000 --repeats 5
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmops import Workspace
from llmops.evals.testing import record_run
from tests.app.browser import browser, chromium_path, dashboard, open_page, settle


def results(n: int, seed: int, version: str) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        passed = rng.random() < 0.85
        rows.append({
            "case_index": i, "target": "model", "case_id": f"case-{i:05d}",
            "vars": {"question": f"What is the capital of country {i}?", "region": f"r{i % 7}"},
            "output": f"The answer to question {i} is {'right' if passed else 'wrong'} ({version}).",
            "passed": passed, "score": 1.0 if passed else rng.random() * 0.5,
            "assertions": [{"type": "icontains", "passed": passed, "score": float(passed),
                            "reason": "mentions the capital" if passed else "no capital"}],
            "latency_ms": 100 + rng.random() * 50, "cost": 0.0001,
        })  # fmt: skip
    return rows


def spread(xs: list[float], unit: str = "s", scale: float = 1.0) -> str:
    ys = [x * scale for x in xs]
    return f"median {statistics.median(ys):.2f} {unit} (range {min(ys):.2f}-{max(ys):.2f}, n={len(ys)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--labels", type=int, default=200)
    args = parser.parse_args()
    exe = chromium_path()
    if exe is None:
        sys.exit("no Chromium: run `bash scripts/chromium.sh` first")
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        root = Path(tmp) / "ws"
        ws = Workspace.init(root, examples=False)
        start = time.perf_counter()
        a = record_run(ws.eval_runs, results(args.cases, 1, "a"), suite_name="big").run_id
        b = record_run(ws.eval_runs, results(args.cases, 2, "b"), suite_name="big").run_id
        print(f"recorded 2 runs x {args.cases} cases in {time.perf_counter() - start:.1f} s")
        pairs = [
            {"case_index": i, "target": t, "vars": {"q": f"question {i}"}, "output": f"{t} {i}"}
            for i in range(args.labels + 20)
            for t in ("base", "tuned")
        ]
        verdicts = [{"case_index": i, "verdict": "B"} for i in range(args.labels + 20)]
        run = record_run(ws.eval_runs, pairs, targets=("base", "tuned"), pairs=verdicts).run_id
        ws.reviews.from_run(run)

        compare_url = "{url}/?page=compare&a=" + a + "&b=" + b
        cold: list[float] = []
        new: list[float] = []
        warm: list[float] = []
        floor: list[float] = []
        review: list[float] = []
        shortcut: list[float] = []
        for _ in range(max(1, args.repeats // 2)):  # fresh servers: the first visitor's wait
            with dashboard(root) as url, browser(exe) as chrome:
                page, seconds = open_page(chrome, compare_url.format(url=url), "Compare eval runs")
                assert a in page.inner_text("body")
                cold.append(seconds)
                page.close()
        with dashboard(root) as url, browser(exe) as chrome:
            returning = chrome.new_context()
            open_page(returning, compare_url.format(url=url), "Compare eval runs")[0].close()
            for _ in range(args.repeats):  # alternating: a new visitor, a returning one
                page, seconds = open_page(chrome, compare_url.format(url=url), "Compare eval runs")
                new.append(seconds)
                page.close()
                page, seconds = open_page(
                    returning, compare_url.format(url=url), "Compare eval runs"
                )
                warm.append(seconds)
                page.close()
                page, seconds = open_page(returning, f"{url}/?page=prompts", "Prompts")
                floor.append(seconds)
                page.close()
            for _ in range(args.repeats):
                page, seconds = open_page(chrome, f"{url}/?page=review", "Human review")
                review.append(seconds)
                item = page.locator("h3").filter(has_text="label(s) so far").first.inner_text()
                page.mouse.click(5, 5)
                start = time.perf_counter()
                page.keyboard.press("3")
                page.get_by_text(f"Saved tie for {item.split(' · ')[0]}").wait_for()
                shortcut.append(time.perf_counter() - start)
                settle(page, "Human review")
                page.close()
        items = [i.item for i in ws.reviews.queue("bench", limit=args.labels)]
        saves = []
        for item in items:
            start = time.perf_counter()
            ws.reviews.add(item, random.choice(["A", "B", "tie"]), "bench")
            saves.append(time.perf_counter() - start)
        ws.close()
    print(f"compare page, fresh server, new visitor: {spread(cold)}")
    print(f"compare page, new visitor (nothing in the browser's cache): {spread(new)}")
    print(f"compare page, returning visitor: {spread(warm)}")
    print(f"prompts page (a small page: streamlit's own floor), returning visitor: {spread(floor)}")
    print(f"review queue, first screen: {spread(review)}")
    print(f"label by keyboard shortcut until 'Saved' shows: {spread(shortcut, 'ms', 1000)}")
    print(
        f"ws.reviews.add: {spread(saves, 'ms', 1000)}, max {max(saves) * 1000:.1f} ms "
        f"over {len(saves)} labels"
    )


if __name__ == "__main__":
    main()
