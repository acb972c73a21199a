"""What every method meta-trains on: the ``MetaProblem`` (the shared bottom type of the package).

It sits with ``liftpeft.objective`` below tasks, data, the PEFT layer and methods, so any of them can
build or take one without importing another's layer. ``liftpeft.methods`` re-exports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from liftpeft.objective import TaskObjective


@dataclass
class MetaProblem:
    """What a method meta-trains on.

    ``train``: the training tasks; ``theta0``: the PEFT initialisation ``(d,)`` (LoRA: A random,
    B zero), also the center of LiFT's prior; ``dev``: meta-dev tasks (for early stopping or
    tuning, never test tasks); ``description``: the backbone description saved with artefacts.
    """

    train: Sequence[TaskObjective]
    theta0: torch.Tensor
    dev: Sequence[TaskObjective] = ()
    description: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.train:
            raise ValueError("meta-training needs at least one training task")
        if self.theta0.dim() != 1:
            raise ValueError(f"theta0 must be a flat (d,) vector, got shape {tuple(self.theta0.shape)}")

    @property
    def dim(self) -> int:
        return self.theta0.shape[0]
