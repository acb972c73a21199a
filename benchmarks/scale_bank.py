"""Step cost and resident memory of the sharded sampler against the number of tasks, with the task
adapters in a file bank (``task_bank: file``): flat in N is the target (within 10%).

d = 10^5 adapter numbers per task and N = 10^2 .. 10^5 tasks: the bank addresses up to 40 GB per
field (sparse files; only visited rows reach the disk). The likelihood gradient is a cheap synthetic
one (``-(theta - y)`` with a fixed target), so the timings are the sampler's and the bank's own: the
page-in and page-out of the visited rows, the statistics, the draw of ``phi``, a checkpoint every 100
steps (the rows it commits included). Each N runs in a fresh process, so that its peak resident
memory (``ru_maxrss``) is its own; pSGLD, so the bank has two fields (adapters, RMSprop averages).

    python benchmarks/scale_bank.py                 # d = 1e5, N = 1e2 .. 1e5, 400 steps each
    python benchmarks/scale_bank.py --quick         # d = 1e4, N = 1e2 .. 1e4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import torch

from liftpeft.core.prior import HierarchicalPrior
from liftpeft.scale.latent import PaperLatent
from liftpeft.scale.sampler import ShardedGibbs, random_schedule

CHECKPOINT_EVERY = 100


def one(n: int, d: int, steps: int, folder: str) -> dict:
    torch.set_num_threads(1)
    target = torch.full((d,), 0.01)
    prior = HierarchicalPrior(1.0, 0.1, center=torch.zeros(d))
    sampler = ShardedGibbs(PaperLatent(prior, n, d, seed=0), n, d, torch.zeros(d), 1e-3, seed=0,
                           preconditioner="rmsprop", bank_path=folder)  # fmt: skip
    grad = lambda i, theta: target - theta  # noqa: E731
    for step in range(20):
        sampler.step(random_schedule(0, n, 1, 1, step), grad)
    times = []
    for step in range(20, 20 + steps):
        start = time.perf_counter()
        sampler.step(random_schedule(0, n, 1, 1, step), grad)
        if (step + 1) % CHECKPOINT_EVERY == 0:
            sampler.state_dict()  # what a checkpoint saves (the rows not yet committed) ...
            sampler.bank.commit()  # ... and then writes to the bank
        times.append(time.perf_counter() - start)
    times.sort()
    return {
        "n": n,
        "median_ms": 1e3 * times[len(times) // 2],
        "mean_ms": 1e3 * sum(times) / len(times),
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "bank_gb": 2 * n * d * 4 / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dim", type=int, default=100_000)
    parser.add_argument("--tasks", default="100,1000,10000,100000")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process: one N
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.dim, args.tasks, args.steps, args.rounds = 10_000, "100,1000,10000", 200, 1
    if args.one is not None:
        print(json.dumps(one(args.one, args.dim, args.steps, args.folder)))
        return
    sizes = [int(x) for x in args.tasks.split(",")]
    runs: dict[int, list[dict]] = {n: [] for n in sizes}
    for _ in range(args.rounds):  # alternate the sizes, so that the machine's load hits them alike
        for n in sizes:
            with tempfile.TemporaryDirectory() as folder:
                cmd = [sys.executable, __file__, "--one", str(n), "--dim", str(args.dim), "--steps",
                       str(args.steps), "--folder", folder]  # fmt: skip
                env = {**os.environ, "OMP_NUM_THREADS": "1"}
                out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
                runs[n].append(json.loads(out.stdout.strip().splitlines()[-1]))
    rows = []
    for n in sizes:
        median = sorted(r["median_ms"] for r in runs[n])[len(runs[n]) // 2]
        rows.append({**runs[n][0], "median_ms": median, "all": [r["median_ms"] for r in runs[n]],
                     "maxrss_mb": max(r["maxrss_mb"] for r in runs[n])})  # fmt: skip
    base = rows[0]
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    print(f"# sharded sampler with a file bank ({machine})")
    print(f"d = {args.dim}, {args.steps} timed steps per N, one task per step, pSGLD, checkpoint every "
          f"{CHECKPOINT_EVERY}; {args.rounds} rounds with the sizes alternating: a step's median per round, "
          "then the median of the rounds\n")  # fmt: skip
    print(
        "| tasks N | bank addressed (GB) | step median (ms) | ratio to first | rounds (ms) | peak RSS (MB) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        each = ", ".join(f"{t:.2f}" for t in r["all"])
        ratio = r["median_ms"] / base["median_ms"]
        print(
            f"| {r['n']:,} | {r['bank_gb']:.2f} | {r['median_ms']:.2f} | {ratio:.2f} | {each} | {r['maxrss_mb']:.0f} |"
        )
    spread = max(r["median_ms"] for r in rows) / min(r["median_ms"] for r in rows)
    print(f"\nlargest / smallest median step: {spread:.2f} (target <= 1.10); "
          f"peak RSS {min(r['maxrss_mb'] for r in rows):.0f} .. {max(r['maxrss_mb'] for r in rows):.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
