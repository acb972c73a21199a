"""LiFT: the hierarchical Bayesian prior over adapters, SGLD-Gibbs meta-training, mixture prior."""

from __future__ import annotations

import os

import torch

from liftpeft.learned_prior import LearnedPrior
from liftpeft.methods.base import MetaProblem, register
from liftpeft.methods.lift.adapt import adapt_to_task
from liftpeft.methods.lift.config import LiftConfig
from liftpeft.methods.lift.trainer import LiftTrainer, MetaTrainingError
from liftpeft.objective import TaskObjective


@register(
    "lift",
    "LiFT: meta-learn a mixture prior over adapters by SGLD-Gibbs + online EM; adapt by SGLD under it",
    LiftConfig,
    family="LiFT",
)
class Lift:
    """LiFT as a method: ``meta_train`` returns a ``LearnedPrior``, ``adapt`` returns samples ``(M, d)``."""

    name = "lift"

    def __init__(self, config: LiftConfig | None = None) -> None:
        self.config = config or LiftConfig()

    def meta_train(
        self, problem: MetaProblem, seed: int, workdir: str | os.PathLike | None = None, resume: bool = False
    ) -> LearnedPrior:
        return LiftTrainer(problem, self.config, seed=seed, workdir=workdir).run(resume=resume)

    def adapt(self, state: LearnedPrior, task: TaskObjective, seed: int) -> torch.Tensor:
        return adapt_to_task(state, task, self.config, seed=seed).samples


__all__ = ["LearnedPrior", "Lift", "LiftConfig", "LiftTrainer", "MetaTrainingError", "adapt_to_task"]
