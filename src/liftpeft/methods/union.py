"""Union-Train: one adapter trained on the union of the training tasks, then fine-tuned per task."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from liftpeft.methods.base import MetaProblem, register
from liftpeft.methods.finetune import FINETUNE_TEST_TIME, FinetuneConfig, finetune_with
from liftpeft.objective import TaskObjective, sample_batch
from liftpeft.progress import progress_bar


@dataclass
class UnionConfig(FinetuneConfig):
    meta_steps: int = field(default=2000, metadata={"help": "AdamW steps on the union of training tasks"})
    meta_lr: float = field(default=1e-3, metadata={"help": "learning rate of union training"})
    meta_batch_size: int = field(default=16, metadata={"help": "examples per union-training step"})


def train_on_union(problem: MetaProblem, steps: int, lr: float, batch_size: int, seed: int) -> torch.Tensor:
    """AdamW from ``theta0``: each step draws a task uniformly, then a minibatch of its examples."""
    leaf = problem.theta0.detach().clone().requires_grad_(True)
    optimizer = torch.optim.AdamW([leaf], lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    sizes = [t.n_examples("train") for t in problem.train]
    for _ in progress_bar(range(steps), desc="union training", unit="step"):
        i = int(torch.randint(len(problem.train), (1,), generator=generator))
        optimizer.zero_grad(set_to_none=True)
        problem.train[i].loss(leaf, sample_batch(sizes[i], batch_size, generator)).backward()
        optimizer.step()
    return leaf.detach()


@register(
    "union",
    "Union-Train: one adapter trained on all training tasks pooled, then fine-tuned",
    UnionConfig,
    family="fine-tuning",
    state_types=(torch.Tensor,),
    test_time_fields=FINETUNE_TEST_TIME,
    budget_field="meta_steps",
    resumable_mid_run=False,
)
class Union:
    name = "union"

    def __init__(self, config: UnionConfig | None = None) -> None:
        self.config = config or UnionConfig()

    def meta_train(self, problem: MetaProblem, seed: int) -> torch.Tensor:
        c = self.config
        return train_on_union(problem, c.meta_steps, c.meta_lr, c.meta_batch_size, seed)

    def adapt(self, state: torch.Tensor, task: TaskObjective, seed: int) -> torch.Tensor:
        return finetune_with(self.config, task, state, seed)
