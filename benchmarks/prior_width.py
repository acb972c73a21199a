"""Post-hoc check of LiFT's test-time prior width on a benchmark's meta-test tasks.

Takes one meta-trained LiFT state (a ``states/lift-*-seedS`` folder written by ``liftpeft bench``)
and adapts every meta-test task under the learned prior with the task spread ``beta`` scaled by each
of ``--scales`` (``adapt_beta_scale``; the state is reused, nothing is meta-trained). Prints one JSON
line per (task, scale), then a Markdown table (means and paired t-tests over tasks), with
``--reference`` against the rows of a results file (e.g. No-Meta-Train of the same seed). This is an analysis of a finished run, not tuning: the
shipped configs are chosen on meta-dev tasks.

    PYTHONPATH=src python benchmarks/prior_width.py --benchmark bigbench-cls \
        --state runs/bigbench-cls-cpu-partial/states/lift-d3c4655f9d-seed0 --scales 1,10 \
        --reference results/bigbench-cls/results.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import torch

from liftpeft.bench import build_benchmark, load_bench_config
from liftpeft.bench.runner import _load_state, _run_task, resolve_method
from liftpeft.methods.base import build_method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", help="registered benchmark (to adapt)")
    parser.add_argument("--state", help="a states/lift-*-seedS folder (to adapt)")
    parser.add_argument(
        "--summarize",
        nargs="+",
        metavar="OUT",
        help="instead of adapting, tabulate JSON lines printed by earlier runs",
    )
    parser.add_argument("--scales", default="1,10", help="comma-separated adapt_beta_scale values")
    parser.add_argument("--tasks", help="comma-separated task names (default: all meta-test tasks)")
    parser.add_argument("--reference", help="results.jsonl whose rows of the same seed to compare with")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.summarize:
        summarize(args.summarize, args.reference)
        return
    if not (args.benchmark and args.state):
        parser.error("--benchmark and --state are required unless --summarize is given")
    torch.set_num_threads(args.threads)

    seed = int(Path(args.state).name.rsplit("seed", 1)[1])
    config = load_bench_config(args.benchmark)
    data = build_benchmark(config["benchmark"], config["settings"])
    state = _load_state(Path(args.state))
    if state is None:
        raise SystemExit(f"no LiFT state in {args.state}")
    wanted = set(args.tasks.split(",")) if args.tasks else None
    tasks = [t for t in data.test if wanted is None or t.name in wanted]
    base, settings = resolve_method(config, "lift")
    scores: dict[str, dict[str, float]] = defaultdict(dict)
    for scale in (float(s) for s in args.scales.split(",")):
        method = build_method(base, **{**settings, "adapt_beta_scale": scale})
        for task in tasks:
            row = _run_task(method, state, task, seed)
            value = row["metrics"][row["primary_metric"]]
            scores[f"lift beta x{scale:g}"][task.name] = value
            print(
                json.dumps({"task": task.name, "adapt_beta_scale": scale, "seed": seed, "score": value}),
                flush=True,
            )
    _add_reference(scores, args.reference, seed)
    print()
    _table(scores, seed)


def summarize(outputs: list[str], reference: str | None) -> None:
    """Tabulate the JSON lines that earlier adapting runs printed (all of one seed)."""
    scores: dict[str, dict[str, float]] = defaultdict(dict)
    seeds = set()
    for path in outputs:
        for line in Path(path).read_text().splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                scores[f"lift beta x{row['adapt_beta_scale']:g}"][row["task"]] = row["score"]
                seeds.add(row["seed"])
    if len(seeds) != 1:
        raise SystemExit(f"expected rows of one seed, got {sorted(seeds)}")
    (seed,) = seeds
    _add_reference(scores, reference, seed)
    _table(scores, seed)


def _add_reference(scores: dict[str, dict[str, float]], reference: str | None, seed: int) -> None:
    """Add the non-LiFT rows of ``seed`` from a ``results.jsonl`` (e.g. No-Meta, Union, zero-shot)."""
    if not reference:
        return
    for line in Path(reference).read_text().splitlines():
        row = json.loads(line)
        if row["seed"] == seed and not row["method"].startswith("lift"):
            scores[row["method"]][row["task"]] = row["metrics"][row["primary_metric"]]


def _table(scores: dict[str, dict[str, float]], seed: int) -> None:
    """Mean over the tasks every method has, and paired t-tests over those tasks (scipy)."""
    from scipy import stats

    tasks = sorted(set.intersection(*(set(v) for v in scores.values())))
    names = list(scores)
    print(
        f"| method (seed {seed}, {len(tasks)} tasks) | mean | "
        + " | ".join(f"p vs {n}" for n in names)
        + " |"
    )
    print("|---|---|" + "---|" * len(names))
    for a in names:
        cells = []
        for b in names:
            if a == b:
                cells.append("–")
            else:
                p = stats.ttest_rel([scores[a][t] for t in tasks], [scores[b][t] for t in tasks]).pvalue
                cells.append(f"{p:.2g}")
        print(f"| {a} | {statistics.mean(scores[a][t] for t in tasks):.4f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
