"""No-Meta-Train: fine-tune every new task from the PEFT initialisation (the floor to beat)."""

from __future__ import annotations

import torch

from liftpeft.methods.base import MetaProblem, register
from liftpeft.methods.finetune import FINETUNE_TEST_TIME, FinetuneConfig, finetune_with
from liftpeft.objective import TaskObjective


@register(
    "no-meta",
    "No-Meta-Train: fine-tune each new task from the PEFT initialisation",
    FinetuneConfig,
    family="fine-tuning",
    state_types=(torch.Tensor,),
    test_time_fields=FINETUNE_TEST_TIME,
    budget_field=None,
    resumable_mid_run=False,
)
class NoMeta:
    name = "no-meta"

    def __init__(self, config: FinetuneConfig | None = None) -> None:
        self.config = config or FinetuneConfig()

    def meta_train(self, problem: MetaProblem, seed: int) -> torch.Tensor:
        return problem.theta0.clone()

    def adapt(self, state: torch.Tensor, task: TaskObjective, seed: int) -> torch.Tensor:
        return finetune_with(self.config, task, state, seed)
