"""Generated-output check on bigbench-gen META-DEV tasks: greedy decoding against teacher-forced exact match.

For each of the first ``--per-family`` meta-dev tasks of every family, on its first ``--n`` query
examples: the teacher-forced exact match (every target token the argmax) beside the exact match of
the greedy generation (decoded text equal to the reference after stripping), for the pre-trained model
(zero-shot) and after No-Meta fine-tuning. Prints one JSON line per task and example generations.

    python benchmarks/tuning/bigbench_gen_generation.py --per-family 1 --n 8 --steps 30 --lr 0.01
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-family", type=int, default=1)
    parser.add_argument("--n", type=int, default=8, help="query examples generated per task")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from liftpeft.bench.benchmarks import build_benchmark
    from liftpeft.bench.runner import load_bench_config
    from liftpeft.methods.finetune import FinetuneConfig, finetune_with

    settings = dict(load_bench_config("bigbench-gen")["settings"])
    settings["max_dev_tasks_per_family"] = args.per_family
    bench = build_benchmark("bigbench-gen", settings)
    config = FinetuneConfig(adapt_steps=args.steps, adapt_lr=args.lr, adapt_batch_size=8)
    for task in bench.dev:
        row: dict = {"task": task.name}
        idx = list(range(min(args.n, task.n_examples("test"))))
        for label, theta in (("zero-shot", bench.problem.theta0), ("no-meta", None)):
            start = time.perf_counter()
            if theta is None:
                theta = finetune_with(config, task, bench.problem.theta0, seed=0)
            tf = _teacher_forced(task, theta, idx)
            generated = task.generate(theta, "test", idx=idx)
            targets = [task.task.test[i].target for i in idx]
            gen_em = sum(g.strip() == t.strip() for g, t in zip(generated, targets)) / len(idx)
            row[label] = {
                "teacher_forced_em": tf,
                "generated_em": gen_em,
                "seconds": round(time.perf_counter() - start, 1),
                "examples": [{"generated": g, "reference": t} for g, t in list(zip(generated, targets))[:3]],
            }
        print(json.dumps(row), flush=True)


def _teacher_forced(task, theta: torch.Tensor, idx: list[int]) -> float:
    """Teacher-forced exact match on query examples ``idx`` only (a task holding just those)."""
    from liftpeft.peft_integration import PeftTaskObjective
    from liftpeft.tasks.schema import Task

    subset = Task(task.name, "text2text", train=task.task.train, test=[task.task.test[i] for i in idx])
    return PeftTaskObjective(task.backbone, subset, max_length=task.max_length).evaluate(theta)["exact_match"]


if __name__ == "__main__":
    main()
