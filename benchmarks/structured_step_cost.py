"""Cost of one step of the structured prior's sampler against the number of tasks N, per switch.

The likelihood gradient is a precomputed tensor, so the timings are the sampler's own overhead. Each
row is measured side by side with a plain SGD step on one task's adapter (``theta -= lr * g``) and
the paper's ``gibbs`` step (``SGLDGibbs``) in the same process; the ratios are what to read (the
machine is shared and noisy). The MH cluster move's likelihood evaluations are not included (they
are two forward passes of the backbone, not sampler overhead).

    python benchmarks/structured_step_cost.py            # d = 1e5, N = 10 .. 1e4
    python benchmarks/structured_step_cost.py --quick    # d = 1e4, N = 10 .. 1e4
"""

from __future__ import annotations

import argparse
import platform

import torch
from core_step_cost import median_time  # the same timer (this folder is on sys.path when run)

from liftpeft.core import HierarchicalPrior, SGLDGibbs
from liftpeft.core.structured import StructuredGibbs, StructuredHierarchy

SWITCHES = {
    "spread (per tensor, 8 blocks)": dict(learn_spread=True),
    "clusters (K = 5)": dict(clusters=5),
    "Student-t tails": dict(dof=4.0),
    "all three": dict(learn_spread=True, clusters=5, dof=4.0),
}


def step_time(sampler, n: int, grad: torch.Tensor, repeats: int) -> float:
    """Median seconds of one step, visiting the tasks in turn."""
    visit = iter(range(10**9))
    return median_time(lambda: sampler.step(next(visit) % n, lambda row: grad.clone()), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    d = 10_000 if args.quick else 100_000
    tasks = [10, 100, 1000, 10_000]
    blocks = torch.arange(d) * 8 // d
    grad = torch.randn(d) * 0.01
    print(
        f"# structured sampler step cost, d = {d}, {args.threads} thread(s), {platform.processor() or 'cpu'}"
    )
    print(
        "| switch | N | plain SGD step (ms) | paper gibbs step / SGD | structured step / SGD | structured / paper |"
    )
    print("|---|---|---|---|---|---|")
    for name, switches in SWITCHES.items():
        for n in tasks:
            theta = torch.zeros(d)
            sgd = median_time(lambda theta=theta: theta.sub_(grad, alpha=1e-3), args.repeats)
            paper = SGLDGibbs(HierarchicalPrior(1.0, 1.0), n, d, step_size=1e-3, phi_update="gibbs", seed=0)
            paper_t = step_time(paper, n, grad, args.repeats)
            model = StructuredHierarchy(1.0, 1.0, torch.zeros(d), blocks, **switches)
            sampler = StructuredGibbs(model, n, step_size=1e-3, seed=0, check_stability=False)
            ours = step_time(sampler, n, grad, args.repeats)
            print(
                f"| {name} | {n} | {sgd * 1e3:.3f} | {paper_t / sgd:.1f} | {ours / sgd:.1f} | {ours / paper_t:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
