"""The structured prior's first partition on the clustered family: random, gradients or offsets.

For each `cluster_init` and family seed: 3 clusters of softmax heads, 30 training tasks of 100
examples, 30 new tasks with 20 shots (the chain of `tests/fixtures/clustered_chain.py`, which
`tests/methods/test_structured_lift.py` checks). Prints the
training tasks' adjusted Rand index against the true clusters and the fraction of new tasks whose most
responsible component after adaptation is their own cluster, then the means over seeds.

    python benchmarks/first_partition.py --seeds 10 > benchmarks/results/first_partition.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"))
from clustered_chain import run_chain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="family seeds 0..N-1")
    parser.add_argument("--inits", default="random,gradients,offsets", help="comma-separated cluster_init")
    args = parser.parse_args()
    torch.set_num_threads(1)
    inits = args.inits.split(",")
    print(f"`python benchmarks/first_partition.py --seeds {args.seeds}`\n")
    print("| cluster_init | " + " | ".join(f"seed {s}" for s in range(args.seeds)) + " | mean |")
    print("|---" * (args.seeds + 2) + "|")
    for init in inits:
        runs = [run_chain(init, seed)[1:] for seed in range(args.seeds)]
        cells = " | ".join(f"{ari:.2f} / {acc:.2f}" for ari, acc in runs)
        mean_ari = sum(r[0] for r in runs) / len(runs)
        mean_acc = sum(r[1] for r in runs) / len(runs)
        print(f"| {init} | {cells} | {mean_ari:.3f} / {mean_acc:.3f} |", flush=True)
    print("\nEach cell: training-task ARI / new tasks in their own cluster.")


if __name__ == "__main__":
    main()
