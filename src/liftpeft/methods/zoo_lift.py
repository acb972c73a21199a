"""Zoo-LiFT: LiFT's mixture prior built from per-task adapters instead of SGLD-Gibbs (SPEC section 5).

Meta-training fine-tunes one adapter per training task from the PEFT initialisation and fits the
mixture prior to them (``liftpeft.zoo_prior.zoo_prior``); adaptation is LiFT's test-time SGLD (or MAP)
under that prior. It is what a user holding a library of LoRAs gets from ``liftpeft zoo-prior``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from liftpeft.learned_prior import LearnedPrior
from liftpeft.methods.base import CostSpec, MetaProblem, register
from liftpeft.methods.finetune import TaskAdapterConfig, train_task_adapters
from liftpeft.methods.lift import LiftConfig, adapt_to_task
from liftpeft.methods.lift.variants import SINGLE_PRIOR
from liftpeft.objective import TaskObjective
from liftpeft.zoo_prior import zoo_prior

ZOO_LIFT_TEST_TIME = (
    "adapt_steps",
    "adapt_step_size",
    "adapt_method",
    "adapt_temperature",
    "adapt_keep_last",
    "adapt_batch_size",
    "adapt_beta_scale",
    "adapt_start",
    "adapt_gain_cap",
)


@dataclass
class ZooLiftConfig(TaskAdapterConfig):
    """Per-task fine-tuning, the zoo mixture, and LiFT's test-time settings (see ``LiftConfig``)."""

    k: int = field(default=5, metadata={"help": "mixture components (at most the number of training tasks)"})
    sigma: float = field(default=0.01, metadata={"help": "std of the top-level prior (kept with the prior)"})
    beta: float = field(default=0.01, metadata={"help": "std of a task's adapter around its component"})
    tau: float = field(default=1.0, metadata={"help": "likelihood temperature at test time"})
    step_size: float = field(default=1e-3, metadata={"help": "test-time SGLD step size"})
    preconditioner: str | None = field(default="rmsprop", metadata={"help": "None or 'rmsprop' (pSGLD)"})
    adapt_steps: int = field(default=100, metadata={"help": "test-time adaptation steps"})
    adapt_method: str = field(default="sgld", metadata={"help": "sgld | map"})
    adapt_temperature: float = field(default=1.0, metadata={"help": "SGLD temperature at test time"})
    adapt_keep_last: int = field(default=1, metadata={"help": "samples averaged in the predictive"})
    adapt_batch_size: int = field(default=16, metadata={"help": "examples per test-time step"})
    adapt_step_size: float | None = field(default=None, metadata={"help": "defaults to step_size"})
    adapt_beta_scale: float = field(
        default=1.0, metadata={"help": "multiplies the task spread at test time (1: the fitted prior)"}
    )
    adapt_start: str = field(default="best", metadata={"help": "best | all mixture components (see lift)"})
    adapt_gain_cap: bool = field(
        default=False,
        metadata={"help": "cap pSGLD's gain at test time where only the prior constrains (lift's gain_cap)"},
    )
    spread: str = field(
        default="fixed",
        metadata={
            "help": "task spread: fixed (beta) | learned from the zoo per global | tensor | coordinate"
        },
    )
    tail_dof: float | None = field(
        default=None,
        metadata={"help": "Student-t components with these degrees of freedom (unset: Gaussian)"},
    )

    def __post_init__(self) -> None:
        self.check_task_adapter_settings()
        self.lift_config()  # validates the LiFT settings

    def lift_config(self) -> LiftConfig:
        """The ``LiftConfig`` whose test-time fields are these settings (stored with the prior)."""
        return LiftConfig(
            k=self.k,
            sigma=self.sigma,
            beta=self.beta,
            tau=self.tau,
            step_size=self.step_size,
            preconditioner=self.preconditioner,
            adapt_steps=self.adapt_steps,
            adapt_method=self.adapt_method,
            adapt_temperature=self.adapt_temperature,
            adapt_keep_last=self.adapt_keep_last,
            adapt_batch_size=self.adapt_batch_size,
            adapt_step_size=self.adapt_step_size,
            adapt_beta_scale=self.adapt_beta_scale,
            adapt_start=self.adapt_start,
            gain_cap=self.adapt_gain_cap,
            spread=self.spread,
            tail_dof=self.tail_dof,
            clusters=self.k if self.spread != "fixed" or self.tail_dof is not None else 1,
        )


@register(
    "zoo-lift",
    "LiFT's mixture prior fitted to per-task fine-tuned adapters (no SGLD-Gibbs); adapt by SGLD under it",
    ZooLiftConfig,
    family="adapter zoo",
    state_types=(LearnedPrior,),
    test_time_fields=ZOO_LIFT_TEST_TIME,
    budget_field="task_steps",
    cost=CostSpec(
        "per-task adapter step", {"cluster_steps": 1}, per_task=lambda c: True, min_tasks=lambda c: c.k
    ),
    resumable_mid_run=False,
    variants=SINGLE_PRIOR,
)
class ZooLift:
    name = "zoo-lift"

    def __init__(self, config: ZooLiftConfig | None = None) -> None:
        self.config = config or ZooLiftConfig()

    def meta_train(self, problem: MetaProblem, seed: int) -> LearnedPrior:
        c = self.config
        thetas = train_task_adapters(problem.train, problem.theta0, c, seed)
        return zoo_prior(
            thetas,
            problem.theta0,
            k=c.k,
            beta=c.beta,
            sigma=c.sigma,
            seed=seed,
            backbone=problem.description,
            task_names=[t.name for t in problem.train],
            config={**c.lift_config().to_dict(), "seed": seed},
            spread=c.spread,
            tail_dof=c.tail_dof,
        )

    def adapt(self, state: LearnedPrior, task: TaskObjective, seed: int) -> torch.Tensor:
        return adapt_to_task(state, task, self.config.lift_config(), seed=seed).samples
