"""Plain fine-tuning of a flat adapter on one task (AdamW): the inner loop every baseline shares."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from liftpeft.objective import TaskObjective, sample_batch
from liftpeft.progress import progress_bar


def finetune(
    objective: TaskObjective,
    theta: torch.Tensor,
    *,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    weight_decay: float = 0.0,
    callback: Callable[[int, float], None] | None = None,
) -> torch.Tensor:
    """AdamW on ``objective``'s train split from ``theta`` for ``steps`` minibatch steps; returns ``(d,)``."""
    leaf = theta.detach().clone().requires_grad_(True)
    optimizer = torch.optim.AdamW([leaf], lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    n = objective.n_examples("train")
    for step in range(steps):
        idx = sample_batch(n, batch_size, generator)
        optimizer.zero_grad(set_to_none=True)
        loss = objective.loss(leaf, idx, "train")
        loss.backward()
        optimizer.step()
        if callback is not None:
            callback(step, float(loss.detach()))
    return leaf.detach()


# the settings of FinetuneConfig that only affect test-time adaptation
FINETUNE_TEST_TIME = ("adapt_steps", "adapt_lr", "adapt_batch_size")


@dataclass
class FinetuneConfig:
    """Test-time fine-tuning shared by the point-estimate baselines."""

    adapt_steps: int = field(default=100, metadata={"help": "fine-tuning steps on the new task"})
    adapt_lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate on the new task"})
    adapt_batch_size: int = field(default=16, metadata={"help": "examples per fine-tuning step"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})

    def __post_init__(self) -> None:
        if self.adapt_steps < 0 or self.adapt_lr <= 0 or self.adapt_batch_size < 1:
            raise ValueError("adapt_steps must be >= 0, adapt_lr > 0 and adapt_batch_size >= 1")


def finetune_with(
    config: FinetuneConfig, task: TaskObjective, theta: torch.Tensor, seed: int
) -> torch.Tensor:
    """``finetune`` with the settings of ``config``; returns one sample ``(1, d)``."""
    out = finetune(
        task,
        theta,
        steps=config.adapt_steps,
        lr=config.adapt_lr,
        batch_size=config.adapt_batch_size,
        seed=seed,
        weight_decay=config.weight_decay,
    )
    return out[None]


@dataclass
class TaskAdapterConfig:
    """How the per-task adapters of the training tasks are fine-tuned (zoo-based baselines)."""

    task_steps: int = field(default=200, metadata={"help": "fine-tuning steps per training-task adapter"})
    task_lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate of the per-task adapters"})
    task_batch_size: int = field(default=16, metadata={"help": "examples per per-task fine-tuning step"})

    def check_task_adapter_settings(self) -> None:
        if self.task_steps < 0 or self.task_lr <= 0 or self.task_batch_size < 1:
            raise ValueError("task_steps must be >= 0, task_lr > 0 and task_batch_size >= 1")


def train_task_adapters(
    tasks: Sequence[TaskObjective], theta0: torch.Tensor, config: TaskAdapterConfig, seed: int
) -> torch.Tensor:
    """One adapter per task, each fine-tuned from ``theta0`` (task ``i`` seeded ``seed + i``); ``(N, d)``."""
    out = []
    for i, task in enumerate(progress_bar(tasks, desc="per-task adapters", unit="task")):
        out.append(
            finetune(
                task,
                theta0,
                steps=config.task_steps,
                lr=config.task_lr,
                batch_size=config.task_batch_size,
                seed=seed + i,
            )
        )
    return torch.stack(out)
