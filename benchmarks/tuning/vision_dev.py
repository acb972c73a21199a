"""Meta-dev measurements for vision-xdomain: linear probe, zero-shot, No-Meta and Union per image size.

Runs on META-DEV tasks only (``split="dev"``); prints a Markdown table (mean accuracy over tasks, its
standard error, seconds per task). Example::

    PYTHONPATH=src python benchmarks/tuning/vision_dev.py --sizes 32 64 --out /tmp/vision-dev \
        --set dev_domain=fashion_mnist --lrs 0.001 0.01
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import yaml

from liftpeft.bench.benchmarks import build_benchmark
from liftpeft.bench.runner import load_bench_config, run_bench


def _summary(values: list[float]) -> str:
    sem = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sem:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.001], help="No-Meta / Union adapt_lr")
    parser.add_argument("--union-steps", type=int, default=300)
    parser.add_argument("--set", nargs="*", default=[], help="benchmark settings key=value (YAML values)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for size in args.sizes:
        config = load_bench_config("vision-xdomain")
        config["settings"].update({"image_size": size})
        config["settings"].update({k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.set)})
        start = time.perf_counter()
        data = build_benchmark("vision-xdomain", config["settings"])
        build = time.perf_counter() - start
        start = time.perf_counter()
        probe = [task.linear_probe()["accuracy"] for task in data.dev]
        rows.append(
            (size, "linear probe (frozen)", _summary(probe), (time.perf_counter() - start) / len(probe))
        )
        variants = {"zero-shot": {"method": "no-meta", "adapt_steps": 0}}
        for lr in args.lrs:
            variants[f"no-meta-lr{lr}"] = {"method": "no-meta", "adapt_lr": lr}
            variants[f"union-lr{lr}"] = {"method": "union", "adapt_lr": lr, "meta_steps": args.union_steps}
        config["variants"].update(variants)
        out = Path(args.out) / f"px{size}"
        results = run_bench(config, list(variants), [0], out, split="dev", data=data)
        by_method: dict[str, list[dict]] = {}
        for line in results.read_text().splitlines():
            row = json.loads(line)
            by_method.setdefault(row["method"], []).append(row)
        for name in variants:
            got = by_method[name]
            acc = [r["metrics"]["accuracy"] for r in got]
            seconds = statistics.mean(r["adapt_seconds"] for r in got)
            meta = got[0]["meta_train_seconds"]
            label = name + (f" (meta-train {meta:.0f} s)" if meta and meta > 1 else "")
            rows.append((size, label, _summary(acc), seconds))
        print(
            f"px {size}: built in {build:.1f} s, {len(data.dev)} dev tasks, chance {data.info['chance_accuracy']}"
        )
    print("| px | method | accuracy (mean ± s.e. over dev tasks) | s / task (adapt) |")
    print("|---|---|---|---|")
    for size, name, acc, seconds in rows:
        print(f"| {size} | {name} | {acc} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
