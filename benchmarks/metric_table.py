"""Per-method table of several metrics of a bench results file (the report shows the primary one only).

    python benchmarks/metric_table.py results/bigbench-gen --metrics token_accuracy,exact_match --reference lift

Prints Markdown: per method, the mean over tasks of each metric (seeds averaged per task first), the
number of seeds and tasks, and for each metric the paired t-test over the tasks both methods share
against the reference (the same test as the report's "p (tasks)").
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from scipy import stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="results directory (or its results.jsonl)")
    parser.add_argument("--metrics", default="token_accuracy,exact_match")
    parser.add_argument("--reference", default="lift")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    path = Path(args.results)
    path = path / "results.jsonl" if path.is_dir() else path
    metrics = args.metrics.split(",")
    # method -> task -> metric -> [value per seed]
    rows: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    seeds: dict = defaultdict(set)
    order: list[str] = []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r.get("split") != args.split:
            continue
        if r["method"] not in order:
            order.append(r["method"])
        seeds[r["method"]].add(r["seed"])
        for m in metrics:
            rows[r["method"]][r["task"]][m].append(float(r["metrics"][m]))
    per_task = {
        method: {task: {m: sum(v) / len(v) for m, v in ms.items()} for task, ms in tasks.items()}
        for method, tasks in rows.items()
    }
    ref = per_task.get(args.reference)
    head = ["method", "seeds", "tasks"]
    for m in metrics:
        head += [m, f"p vs {args.reference} ({m})"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for method in order:
        tasks = per_task[method]
        cells = [method, str(len(seeds[method])), str(len(tasks))]
        for m in metrics:
            cells.append(f"{sum(t[m] for t in tasks.values()) / len(tasks):.4f}")
            shared = sorted(set(tasks) & set(ref or {}))
            if method == args.reference or ref is None or len(shared) < 2:
                cells.append("–")
                continue
            a = [ref[t][m] for t in shared]
            b = [tasks[t][m] for t in shared]
            p = stats.ttest_rel(a, b).pvalue if any(x != y for x, y in zip(a, b)) else float("nan")
            cells.append(f"{p:.3g} (n={len(shared)})")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
