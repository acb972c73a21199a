"""Per-iteration time and peak memory of every method against plain adapter training, on a benchmark.

For each method (or variant of the benchmark config) a fresh Python process loads the benchmark and
calls :func:`liftpeft.bench.cost.measure_method_cost`: plain fine-tuning steps, the method's
meta-training at two iteration counts and its test-time adaptation at two step counts, interleaved
``--reps`` times; per-iteration seconds are differences over differences (set-up costs cancel),
ratios are taken within one process. Peak memory is the increment over what was in use before
each call (resident set on a CPU, the CUDA allocator with ``--set device=cuda``).

Rows go to ``cost.jsonl`` in the results directory (one per method, replaced when measured again);
``liftpeft report`` adds them to the report as the cost table and to the MAML inner-step table.

    PYTHONPATH=src python benchmarks/method_cost.py --benchmark rule-family --out results/rule-family
    PYTHONPATH=src python benchmarks/method_cost.py --benchmark shakespeare --methods lift,maml \\
        --steps 4,12 --adapt-steps 2,6 --out results/shakespeare
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

COST_FILE = "cost.jsonl"


def _pair(text: str) -> tuple[int, int]:
    a, b = (int(x) for x in text.split(","))
    return a, b


def _one(args: argparse.Namespace) -> None:
    import torch

    from liftpeft.bench.benchmarks import build_benchmark
    from liftpeft.bench.cost import measure_method_cost
    from liftpeft.bench.runner import load_bench_config
    from liftpeft.config_files import parse_assignments

    torch.set_num_threads(args.threads)
    config = load_bench_config(args.config or args.benchmark)
    config["settings"].update(parse_assignments(args.set))
    data = build_benchmark(config["benchmark"], config["settings"])
    device = config["settings"].get("device")
    row = measure_method_cost(
        config,
        args.one,
        data,
        steps=args.steps,
        adapt_steps=args.adapt_steps,
        reps=args.reps,
        max_tasks=args.max_tasks,
        device=device,
    )
    print(json.dumps(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmark", default="rule-family")
    parser.add_argument("--config", help="a bench config file (default: the benchmark's shipped config)")
    parser.add_argument(
        "--methods", help="comma-separated methods/variants (default: every registered method)"
    )
    parser.add_argument("--out", required=True, help="results directory that receives cost.jsonl")
    parser.add_argument("--steps", type=_pair, default=(10, 30), help="two meta-training iteration counts")
    parser.add_argument("--adapt-steps", type=_pair, default=(5, 15), help="two adaptation step counts")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--max-tasks",
        type=int,
        default=8,
        help="training tasks timed for per-task-adapter methods (zoo, Multi-LoRA)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", help="benchmark setting KEY=VALUE (e.g. device=cuda)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per method")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        _one(args)
        return

    from liftpeft.atomic import atomic_write_text
    from liftpeft.evaluation.report import read_costs
    from liftpeft.methods.base import available_methods

    names = args.methods.split(",") if args.methods else list(available_methods())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / COST_FILE
    rows = read_costs(out)
    command = "PYTHONPATH=src python benchmarks/method_cost.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:]
    )
    child = [sys.executable, __file__, *sys.argv[1:]]
    for name in names:
        start = time.perf_counter()
        proc = subprocess.run(
            [*child, "--one", name], capture_output=True, text=True, timeout=args.timeout, check=False
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            print(f"{name}: FAILED ({tail[0]})", flush=True)
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row.update(
            command=command,
            machine=f"{platform.machine()}, torch {__import__('torch').__version__}, {args.threads} thread(s)",
        )
        rows[name] = row
        ratio = row.get("meta_ratio")
        print(
            f"{name}: meta x{ratio:.2f}" if ratio is not None else f"{name}: no meta-training",
            f"adapt x{row['adapt_ratio']:.2f}" if row.get("adapt_ratio") is not None else "",
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
        atomic_write_text(target, "".join(json.dumps(r) + "\n" for r in rows.values()))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
