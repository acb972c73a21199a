"""LiFT: the hierarchical Bayesian prior over adapters, SGLD-Gibbs meta-training, mixture prior."""

from __future__ import annotations

import dataclasses
import os

import torch

from liftpeft.learned_prior import LearnedPrior
from liftpeft.methods.base import MetaProblem, RunContext, register
from liftpeft.methods.lift.adapt import adapt_to_task
from liftpeft.methods.lift.config import LIFT_TEST_TIME, LiftConfig
from liftpeft.methods.lift.sharded import ShardedLiftTrainer
from liftpeft.methods.lift.trainer import LiftTrainer, MetaTrainingError
from liftpeft.methods.lift.variants import LIFT_VARIANTS
from liftpeft.objective import TaskObjective
from liftpeft.scale.comm import from_environment


@register(
    "lift",
    "LiFT: meta-learn a mixture prior over adapters by SGLD-Gibbs + online EM; adapt by SGLD under it",
    LiftConfig,
    family="LiFT",
    state_types=(LearnedPrior,),
    test_time_fields=LIFT_TEST_TIME,
    budget_field="steps",
    resumable_mid_run=True,
    variants=LIFT_VARIANTS,
    shards_tasks=True,
)
class Lift:
    """LiFT as a method: ``meta_train`` returns a ``LearnedPrior``, ``adapt`` returns samples ``(M, d)``."""

    name = "lift"

    def __init__(self, config: LiftConfig | None = None) -> None:
        self.config = config or LiftConfig()
        self.last_adapt_report: dict | None = None  # the component started from, the responsibilities

    def meta_train(
        self,
        problem: MetaProblem,
        seed: int,
        workdir: str | os.PathLike | None = None,
        resume: bool = False,
        *,
        run: RunContext | None = None,
    ) -> LearnedPrior:
        """``run`` (or ``workdir`` / ``resume``): checkpoint the chain there and continue a killed run."""
        config, on_log = self.config, None
        if run is not None:
            workdir, resume, on_log = run.workdir, run.resume and run.workdir is not None, run.on_log
            if run.checkpoint_every is not None:
                config = dataclasses.replace(config, checkpoint_every=run.checkpoint_every)
        comm = from_environment()
        if comm.world_size > 1 or config.task_bank == "file":
            trainer = ShardedLiftTrainer(
                problem, config, seed=seed, workdir=workdir, comm=comm, on_log=on_log
            )
            return trainer.run(resume=resume)
        return LiftTrainer(problem, config, seed=seed, workdir=workdir, on_log=on_log).run(resume=resume)

    def adapt(self, state: LearnedPrior, task: TaskObjective, seed: int) -> torch.Tensor:
        result = adapt_to_task(state, task, self.config, seed=seed)
        self.last_adapt_report = result.report
        return result.samples


__all__ = [
    "LearnedPrior",
    "Lift",
    "LiftConfig",
    "LiftTrainer",
    "MetaTrainingError",
    "ShardedLiftTrainer",
    "adapt_to_task",
]
