"""Cost of one SGLD-Gibbs step and one online-EM update, against d and N, for each phi mode.

The likelihood gradient is a precomputed tensor, so the timings are the sampler's own overhead
(what LiFT adds to a training step). For scale, each row also shows a plain SGD step on one task's
adapter (``theta -= lr * g``) and a *naive* step that recomputes ``sum_i theta_i`` (O(N d)), which
the sampler avoids. Grid cells with N * d > --max-elements are skipped (memory).

    python benchmarks/core_step_cost.py            # full grid, d 1e3..1e6, N 10..1e4
    python benchmarks/core_step_cost.py --quick    # a smaller grid for a smoke run
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings

import torch

from liftpeft.core import HierarchicalPrior, OnlineGaussianMixture, SGLDGibbs
from liftpeft.core.sgld import recommended_step_size


def median_time(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def gibbs_step_cost(mode: str, n: int, d: int, repeats: int) -> float:
    prior = HierarchicalPrior(1.0, 1.0)
    step = recommended_step_size(prior.phi_curvature(n))  # a stable step, so the chain stays finite
    sampler = SGLDGibbs(prior, n, d, step_size=step, phi_update=mode, seed=0)
    grad = 0.01 * torch.randn(d)
    counter = iter(range(10**9))
    return median_time(lambda: sampler.step(next(counter) % n, lambda th: grad), repeats)


def naive_step_cost(n: int, d: int, repeats: int) -> float:
    theta, phi, grad = torch.zeros(n, d), torch.zeros(d), torch.randn(d)

    def step():
        theta[0] += 1e-3 * grad
        phi.add_(1e-3 * (theta.sum(0) - n * phi))  # the O(N d) sum the sampler avoids

    return median_time(step, repeats)


def sgd_step_cost(d: int, repeats: int) -> float:
    theta, grad = torch.zeros(d), torch.randn(d)
    return median_time(lambda: theta.sub_(1e-3 * grad), repeats)


def em_update_cost(k: int, d: int, repeats: int) -> float:
    gen = torch.Generator().manual_seed(0)
    mix = OnlineGaussianMixture(k, random_state=0, buffer_size=max(2 * k, 10))
    mix.partial_fit(torch.randn(max(2 * k, 10), d, generator=gen))
    x = torch.randn(d, generator=gen)
    return median_time(lambda: mix.partial_fit(x), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--max-elements", type=float, default=1e8, help="skip cells with N*d above this")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    dims = [1_000, 10_000, 100_000] if args.quick else [1_000, 10_000, 100_000, 1_000_000]
    tasks = [10, 100, 1000] if args.quick else [10, 100, 1_000, 10_000]
    modes = ["cavity", "exact", "gibbs"]
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads={args.threads}")
    print(
        "\nSGLD-Gibbs step (ms, median); 'sgd' = plain SGD step on one adapter; 'naive' recomputes sum_i theta_i"
    )
    header = (
        f"{'d':>9} {'N':>7} "
        + " ".join(f"{m:>8}" for m in modes)
        + f" {'sgd':>8} {'naive':>9} {'exact/sgd':>10}"
    )
    print(header)
    by_d: dict[int, dict[int, float]] = {}
    for d in dims:
        for n in tasks:
            if n * d > args.max_elements:
                continue
            reps = 200 if d <= 10_000 else (50 if d <= 100_000 else 10)
            costs = {m: gibbs_step_cost(m, n, d, reps) for m in modes}
            sgd = sgd_step_cost(d, reps)
            naive = naive_step_cost(n, d, max(3, reps // 5))
            by_d.setdefault(d, {})[n] = costs["exact"]
            cells = " ".join(f"{1e3 * costs[m]:8.3f}" for m in modes)
            print(f"{d:9d} {n:7d} {cells} {1e3 * sgd:8.3f} {1e3 * naive:9.3f} {costs['exact'] / sgd:10.1f}")
    print("\nGrowth with N at fixed d (exact mode; 1.0 = no growth):")
    for d, row in by_d.items():
        ns = sorted(row)
        if len(ns) > 1:
            print(f"  d={d:>9}: N {ns[0]} -> {ns[-1]}: step cost x{row[ns[-1]] / row[ns[0]]:.2f}")
    print("\nOnline-EM update of the mixture, one sample (ms, median)")
    print(f"{'d':>9} {'K=1':>8} {'K=3':>8} {'K=5':>8}")
    for d in dims:
        reps = 100 if d <= 10_000 else (20 if d <= 100_000 else 5)
        cells = " ".join(f"{1e3 * em_update_cost(k, d, reps):8.3f}" for k in (1, 3, 5))
        print(f"{d:9d} {cells}")


if __name__ == "__main__":
    main()
