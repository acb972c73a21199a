"""The structured prior's first partition on the clustered family: random, gradients or offsets.

For each `cluster_init` and family seed: 3 clusters of softmax heads, 30 training tasks of 100
examples, 30 new tasks with 20 shots (the chain of `tests/methods/test_structured_lift.py`). Prints the
training tasks' adjusted Rand index against the true clusters and the fraction of new tasks whose most
responsible component after adaptation is their own cluster, then the means over seeds.

    python benchmarks/first_partition.py --seeds 10 > benchmarks/results/first_partition.md
"""

from __future__ import annotations

import argparse
import itertools

import torch
from sklearn.metrics import adjusted_rand_score

from liftpeft.data.synthetic.clustered import clustered_family
from liftpeft.methods.lift import LiftConfig, LiftTrainer, adapt_to_task


def one_run(cluster_init: str, seed: int) -> tuple[float, float]:
    bench = clustered_family(
        n_clusters=3,
        n_train_tasks=30,
        n_dev_tasks=0,
        n_test_tasks=30,
        n_train=20,
        n_train_meta=100,
        seed=seed,
    )
    config = LiftConfig(
        sigma=1.0, beta=1.0, warmup_lr=1e-2, step_size=1e-2, steps=1500, warmup_steps=500, burnin_steps=500,
        thin=10, batch_size=16, clusters=3, spread="global", adapt_method="map", adapt_steps=50,
        adapt_batch_size=20, cluster_init=cluster_init,
    )  # fmt: skip
    prior = LiftTrainer(bench.meta_problem(), config, seed=0).run()
    assignments = prior.structure["assignments"]
    labels = [max(range(3), key=lambda k: probs[k]) for probs in assignments.values()]
    ari = adjusted_rand_score([t.cluster for t in bench.train], labels)
    found = [
        int(torch.tensor(adapt_to_task(prior, t, config).report["responsibilities"]).argmax())
        for t in bench.test
    ]
    truth = [t.cluster for t in bench.test]
    right = max(sum(p[f] == t for f, t in zip(found, truth)) for p in itertools.permutations(range(3)))
    return ari, right / len(truth)


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
        runs = [one_run(init, seed) for seed in range(args.seeds)]
        cells = " | ".join(f"{ari:.2f} / {acc:.2f}" for ari, acc in runs)
        mean_ari = sum(r[0] for r in runs) / len(runs)
        mean_acc = sum(r[1] for r in runs) / len(runs)
        print(f"| {init} | {cells} | {mean_ari:.3f} / {mean_acc:.3f} |", flush=True)
    print("\nEach cell: training-task ARI / new tasks in their own cluster.")


if __name__ == "__main__":
    main()
