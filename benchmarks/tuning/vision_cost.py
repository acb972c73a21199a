"""Seconds per vision-xdomain task on this machine: frozen-prefix caching and 30 fine-tuning steps.

Meta-dev tasks only. ``PYTHONPATH=src python benchmarks/tuning/vision_cost.py --sizes 32 64 84``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import yaml

from liftpeft.bench.benchmarks import build_benchmark
from liftpeft.bench.runner import load_bench_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 84])
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", nargs="*", default=[], help="benchmark settings key=value (YAML values)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| px | prefix cache s / task | 30 steps s / task | evaluate s / task |")
    print("|---|---|---|---|")
    for size in args.sizes:
        settings = dict(load_bench_config("vision-xdomain")["settings"], image_size=size)
        settings.update({k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.set)})
        data = build_benchmark("vision-xdomain", {**settings, "max_dev_tasks": args.tasks})
        cache, steps, evals = [], [], []
        for task in data.dev:
            start = time.perf_counter()
            for split in ("train", "test"):
                task._split(split)  # the frozen blocks' outputs, cached
            cache.append(time.perf_counter() - start)
            theta = data.problem.theta0.clone().requires_grad_(True)
            opt = torch.optim.AdamW([theta], lr=0.01, weight_decay=0.0)
            start = time.perf_counter()
            for _ in range(args.steps):
                opt.zero_grad()
                task.loss(theta).backward()
                opt.step()
            steps.append(time.perf_counter() - start)
            start = time.perf_counter()
            task.evaluate(theta.detach())
            evals.append(time.perf_counter() - start)
        print(
            f"| {size} | {statistics.mean(cache):.2f} | {statistics.mean(steps):.2f} | {statistics.mean(evals):.2f} |"
        )


if __name__ == "__main__":
    main()
