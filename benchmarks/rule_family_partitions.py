"""How well the structured prior's clusters recover the rule family's hidden rules (training tasks).

Reads the meta-trained LiFT states of a `liftpeft bench --benchmark rule-family` results folder and
prints, per state, the adjusted Rand index between each training task's most probable cluster and its
rule (task ``i`` follows rule ``i % 2``; `liftpeft.data.synthetic.rules`).

    python benchmarks/rule_family_partitions.py results/rule-family
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sklearn.metrics import adjusted_rand_score


def partitions(results: Path, n_rules: int = 2) -> list[tuple[str, dict, float]]:
    rows = []
    for prior_file in sorted(results.glob("states/lift-*/prior.json")):
        prior = json.loads(prior_file.read_text())
        assignments = prior.get("structure", {}).get("assignments")
        if not assignments:
            continue
        names = sorted(assignments)
        found = [max(range(len(assignments[t])), key=assignments[t].__getitem__) for t in names]
        truth = [int(t.rsplit("-", 1)[1]) % n_rules for t in names]
        rows.append((prior_file.parent.name, prior.get("config", {}), adjusted_rand_score(truth, found)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a rule-family results folder (with states/)")
    args = parser.parse_args()
    print("| state | clusters | spread | cluster_init | ARI |\n|---|---|---|---|---|")
    for name, config, ari in partitions(args.results):
        init = config.get("cluster_init") or "random"
        print(f"| {name} | {config.get('clusters')} | {config.get('spread')} | {init} | {ari:.2f} |")


if __name__ == "__main__":
    main()
