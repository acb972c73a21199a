"""Multi-LoRA against one LoRA per task and one multi-task adapter: the seed reviewers' questions in numbers.

Setting: the character-level GPT-2 shipped with liftpeft (``liftpeft/assets/char_gpt2``, 0.82M
parameters, frozen) with LoRA rank 4 on ``c_attn``; ``k`` tasks of the synthetic rule family
(``liftpeft.data.synthetic``: binary choice on random strings, half the tasks follow rule "more a than
b", half "more c than d"; 32 train / 64 test examples each), options scored by log-likelihood.
Every configuration processes the same examples: ``--steps`` minibatches of 16 per task.

Rows (accuracy = mean test accuracy over the k tasks, chance 0.5):

* LoRA per task: k independent adapters, A and B trained (the reviewers' "LoRA").
* Multi-LoRA, frozen shared A: one A at its random PEFT initialisation, one B per task, trained in
  parallel; once per seed of A.
* Multi-LoRA, trainable shared A.
* Sequential, trainable shared A: tasks fine-tuned one after another, each updating the shared A and
  its own B; all tasks scored at the end (reviewer 1, point 3). With A frozen, sequential and parallel
  training are the same computation, so only the trainable-A variant differs.
* Union (multi-task learning): one adapter trained on all tasks pooled.
* bf16: wall time per epoch of Multi-LoRA under CPU autocast (bf16) over ``--bf16-steps`` steps, and
  the accuracy of the fp32-trained Multi-LoRA adapters evaluated under bf16 autocast;
  ``--bf16-train`` also trains a full Multi-LoRA run under autocast (slow where the CPU lacks bf16
  instructions).

An epoch is one pass over every task's training set (k x 32 examples). Run from the repository root:

    HF_HUB_OFFLINE=1 PYTHONPATH=src python benchmarks/multilora.py --out benchmarks/results/multilora.md
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from liftpeft.data.shakespeare import char_backbone_path
from liftpeft.data.synthetic import rule_family
from liftpeft.methods import MetaProblem
from liftpeft.methods.finetune import TaskAdapterConfig, finetune, train_task_adapters
from liftpeft.methods.multilora import LoraParts, MultiLoraConfig, multilora_parameter_counts, train_multilora
from liftpeft.methods.union import train_on_union
from liftpeft.peft_integration import PeftBackbone, PeftTaskObjective

BATCH = 16
N_TRAIN, N_TEST = 32, 64


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_tasks(backbone: PeftBackbone, k: int) -> list[PeftTaskObjective]:
    return [
        PeftTaskObjective(backbone, t)
        for t in rule_family(k, seed=0, n_rules=2, n_train=N_TRAIN, n_dev=4, n_test=N_TEST)
    ]


def accuracy(tasks, thetas: torch.Tensor, bf16: bool = False) -> float:
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with ctx:
        return statistics.mean(t.evaluate(theta)["accuracy"] for t, theta in zip(tasks, thetas))


def epochs(steps: int) -> float:
    return steps * BATCH / N_TRAIN


def multilora_run(backbone, tasks, steps, lr, seed, train_a=False, precision=None):
    parts = LoraParts.from_spec(backbone.spec)
    config = MultiLoraConfig(
        meta_steps=steps, meta_lr=lr, meta_batch_size=BATCH, train_shared_a=train_a, mixed_precision=precision
    )
    start = time.perf_counter()
    shared, task_parts = train_multilora(tasks, backbone.theta0, parts, config, seed)
    seconds = time.perf_counter() - start
    thetas = torch.stack([parts.compose(backbone.theta0, shared, b) for b in task_parts])
    return thetas, seconds


def sequential_shared_a(backbone, tasks, steps, lr, seed):
    """Task after task, each fine-tuning (shared A, own B) from the current A; scored at the end."""
    parts = LoraParts.from_spec(backbone.spec)
    shared = backbone.theta0[parts.shared]
    own = []
    start = time.perf_counter()
    for i, task in enumerate(tasks):
        init = parts.compose(backbone.theta0, shared, backbone.theta0[parts.task])
        theta = finetune(task, init, steps=steps, lr=lr, batch_size=BATCH, seed=seed + i)
        shared = theta[parts.shared]
        own.append(theta[parts.task])
    seconds = time.perf_counter() - start
    return torch.stack([parts.compose(backbone.theta0, shared, b) for b in own]), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=4, help="number of tasks k")
    parser.add_argument("--steps", type=int, default=100, help="minibatches of 16 per task")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the shared A")
    parser.add_argument("--bf16-steps", type=int, default=4, help="parallel steps timed under bf16 autocast")
    parser.add_argument("--bf16-train", action="store_true", help="also train a full Multi-LoRA run in bf16")
    parser.add_argument("--out", type=Path, help="write the markdown report here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    wall = time.perf_counter()

    def backbone_for(seed: int) -> PeftBackbone:
        return PeftBackbone(
            char_backbone_path(), {"r": 4, "lora_alpha": 8, "target_modules": ["c_attn"]}, seed=seed
        )

    k, steps = args.tasks, args.steps
    base = backbone_for(args.seeds[0])
    tasks = make_tasks(base, k)
    counts = multilora_parameter_counts(base.spec, k)
    rows: list[tuple[str, int, float, float]] = []  # name, trainable params, accuracy, s / epoch

    log("warm-up (tokenisation caches, first-call costs) ...")
    multilora_run(base, tasks, 1, args.lr, seed=0)

    log("LoRA per task ...")
    start = time.perf_counter()
    lora = train_task_adapters(tasks, base.theta0, TaskAdapterConfig(steps, args.lr, BATCH), seed=0)
    seconds = time.perf_counter() - start
    rows.append(
        (
            "LoRA per task (A and B trained)",
            counts.lora_per_task,
            accuracy(tasks, lora),
            seconds / epochs(steps),
        )
    )

    multi_acc, multi_time, multi_thetas = [], [], None
    for seed in args.seeds:
        log(f"Multi-LoRA, frozen A seed {seed} ...")
        backbone = base if seed == args.seeds[0] else backbone_for(seed)
        seeded = tasks if seed == args.seeds[0] else make_tasks(backbone, k)
        thetas, seconds = multilora_run(backbone, seeded, steps, args.lr, seed=0)
        multi_thetas = thetas if multi_thetas is None else multi_thetas
        multi_acc.append(accuracy(seeded, thetas))
        multi_time.append(seconds / epochs(steps))
        rows.append(
            (
                f"Multi-LoRA, frozen A (A seed {seed})",
                counts.multilora_trainable,
                multi_acc[-1],
                multi_time[-1],
            )
        )

    log("Multi-LoRA, trainable A ...")
    thetas, seconds = multilora_run(base, tasks, steps, args.lr, seed=0, train_a=True)
    trainable_a = multilora_parameter_counts(base.spec, k, train_shared_a=True).multilora_trainable
    rows.append(
        ("Multi-LoRA, trainable shared A", trainable_a, accuracy(tasks, thetas), seconds / epochs(steps))
    )

    log("sequential, trainable shared A ...")
    thetas, seconds = sequential_shared_a(base, tasks, steps, args.lr, seed=0)
    rows.append(
        (
            "Sequential tasks, trainable shared A",
            trainable_a,
            accuracy(tasks, thetas),
            seconds / epochs(steps),
        )
    )

    log("Union (one multi-task adapter) ...")
    start = time.perf_counter()
    union = train_on_union(MetaProblem(tasks, base.theta0), steps * k, args.lr, BATCH, seed=0)
    seconds = time.perf_counter() - start
    rows.append(
        (
            "Union: one adapter, all tasks pooled",
            base.dim,
            accuracy(tasks, union.expand(k, -1)),
            seconds / epochs(steps),
        )
    )

    log("bf16 autocast ...")
    _, fp32_short = multilora_run(base, tasks, args.bf16_steps, args.lr, seed=0)
    _, bf16_short = multilora_run(base, tasks, args.bf16_steps, args.lr, seed=0, precision="bf16")
    bf16_eval = accuracy(tasks, multi_thetas, bf16=True)
    bf16_row = None
    if args.bf16_train:
        thetas, seconds = multilora_run(base, tasks, steps, args.lr, seed=0, precision="bf16")
        bf16_row = ("Multi-LoRA, frozen A, trained under bf16 autocast", counts.multilora_trainable,
                    accuracy(tasks, thetas), seconds / epochs(steps))  # fmt: skip
        rows.append(bf16_row)

    total = time.perf_counter() - wall
    scaling = [multilora_parameter_counts(base.spec, n) for n in (1, 4, 40, 400)]
    lines = [
        "# Multi-LoRA: parameters, accuracy, training time, trainable A, bf16, multi-task baseline",
        "",
        "Command (repository root, 1 CPU thread):",
        "",
        "```",
        "HF_HUB_OFFLINE=1 PYTHONPATH=src python benchmarks/multilora.py " + " ".join(sys.argv[1:]),
        "```",
        "",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"shared with other jobs (timings are indicative). Total run time {total:.0f} s.",
        "",
        f"Setting: char GPT-2 (liftpeft asset, frozen), LoRA r=4 on c_attn (d_A = {counts.d_shared}, "
        f"d_B = {counts.d_task} per task); k = {k} rule-family tasks (2 rules), {N_TRAIN} train / {N_TEST} "
        f"test examples each; {steps} minibatches of {BATCH} per task ({epochs(steps):.0f} epochs), "
        f"AdamW lr {args.lr}. Chance accuracy 0.5.",
        "",
        "| configuration | trainable adapter params | mean test accuracy | wall s / epoch |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [f"| {name} | {params:,} | {acc:.3f} | {sec:.2f} |" for name, params, acc, sec in rows]
    spread = statistics.stdev(multi_acc) if len(multi_acc) > 1 else 0.0
    lines += [
        "",
        f"Multi-LoRA with frozen A over {len(multi_acc)} seeds of A: accuracy {statistics.mean(multi_acc):.3f} "
        f"± {spread:.3f} (mean ± std).",
        "",
        "Mixed precision (CPU autocast, bf16), Multi-LoRA with frozen A:",
        "",
        "| | wall s / epoch | mean test accuracy |",
        "| --- | ---: | ---: |",
        f"| fp32 training ({args.bf16_steps} steps timed) | {fp32_short / epochs(args.bf16_steps):.2f} | "
        f"{multi_acc[0]:.3f} |",
        f"| bf16 autocast training ({args.bf16_steps} steps timed) | {bf16_short / epochs(args.bf16_steps):.2f} | "
        + (f"{bf16_row[2]:.3f} |" if bf16_row else "not trained (pass --bf16-train) |"),
        f"| fp32-trained adapters evaluated under bf16 autocast | | {bf16_eval:.3f} |",
        "",
        "Stored adapter parameters as the number of tasks grows (the O(dr + kmr) claim):",
        "",
        "| tasks k | Multi-LoRA d_A + k d_B | one LoRA per task k (d_A + d_B) | ratio |",
        "| ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {c.n_tasks} | {c.multilora_total:,} | {c.lora_per_task:,} | {c.multilora_total / c.lora_per_task:.3f} |"
        for c in scaling
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)


if __name__ == "__main__":
    main()
