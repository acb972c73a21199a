"""Non-hierarchical task-wise Bayesian adapters: Bayesian No-Meta-Train (LiFT's ablation, Table 7).

Each new task's adapter is sampled on its own, with nothing learned from the training tasks:

    p(theta*) = N(theta*; theta0, sigma^2 I),   p(D*|theta*) ∝ exp(-(n*/tau) L*(theta*))

by SGLD (or MAP) from ``theta0``, with exactly LiFT's test-time sampler (``core.adapt``: the same
kernels, step-size checks, RMSprop preconditioning and kept samples) and LiFT's default settings,
so it differs from LiFT only by the prior: ``N(theta0, sigma^2)`` instead of the learned mixture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from liftpeft.core.mixture_prior import MixturePrior, adapt
from liftpeft.methods.base import MetaProblem, register
from liftpeft.objective import TaskObjective, loss_and_grad, sample_batch
from liftpeft.progress import progress_bar

SGLD_ADAPT_TEST_TIME = (
    "adapt_steps",
    "adapt_step_size",
    "adapt_batch_size",
    "adapt_method",
    "adapt_temperature",
    "adapt_keep_last",
)


@dataclass
class SGLDAdaptConfig:
    """Test-time SGLD under a Gaussian prior ``N(theta0, sigma^2 I)`` (names and defaults as ``LiftConfig``)."""

    sigma: float = field(default=0.01, metadata={"help": "std of the prior N(theta0, sigma^2) over adapters"})
    tau: float = field(default=1.0, metadata={"help": "likelihood temperature: scales n/tau"})
    adapt_steps: int = field(default=100, metadata={"help": "test-time SGLD steps"})
    adapt_step_size: float = field(default=1e-3, metadata={"help": "test-time SGLD step size"})
    adapt_batch_size: int = field(default=16, metadata={"help": "examples per test-time step"})
    adapt_method: str = field(default="sgld", metadata={"help": "sgld | map"})
    adapt_temperature: float = field(default=1.0, metadata={"help": "SGLD temperature at test time"})
    adapt_keep_last: int = field(default=1, metadata={"help": "last iterates kept as samples (M)"})
    preconditioner: str | None = field(default="rmsprop", metadata={"help": "None or 'rmsprop' (pSGLD)"})
    gain_cap: bool = field(
        default=False,
        metadata={
            "help": "cap pSGLD's gain where only the prior constrains a coordinate (see lift's gain_cap)"
        },
    )

    def __post_init__(self) -> None:
        for name in ("sigma", "tau", "adapt_step_size"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if self.adapt_steps < 0 or self.adapt_batch_size < 1 or self.adapt_keep_last < 1:
            raise ValueError("adapt_steps must be >= 0, adapt_batch_size >= 1 and adapt_keep_last >= 1")
        if self.adapt_method not in ("sgld", "map"):
            raise ValueError(f"adapt_method must be 'sgld' or 'map', got {self.adapt_method!r}")
        if not self.adapt_temperature >= 0:
            raise ValueError(f"adapt_temperature must be >= 0, got {self.adapt_temperature}")
        if self.preconditioner not in (None, "rmsprop"):
            raise ValueError(f"preconditioner must be None or 'rmsprop', got {self.preconditioner!r}")


@dataclass
class IsotropicGaussian:
    """``N(center, sigma^2 I)`` as the one-component mixture ``core.MixturePrior`` takes."""

    center: torch.Tensor
    sigma: float

    @property
    def weights_(self) -> torch.Tensor:
        return torch.ones(1, dtype=torch.float64, device=self.center.device)

    @property
    def means_(self) -> torch.Tensor:
        return self.center.detach()[None]

    @property
    def covariances_(self) -> torch.Tensor:
        return torch.full_like(self.means_, self.sigma**2)


def sgld_adapt(
    config: SGLDAdaptConfig, task: TaskObjective, center: torch.Tensor, init: torch.Tensor, seed: int
) -> torch.Tensor:
    """SGLD on ``log N(theta; center, sigma^2) + log p(D|theta)`` from ``init``; returns ``(M, d)``."""
    n = task.n_examples("train")
    generator = torch.Generator().manual_seed(int(seed) + 7919)
    scale = n / config.tau

    def grad_log_lik(theta: torch.Tensor) -> torch.Tensor:
        _, grad = loss_and_grad(task, theta, sample_batch(n, config.adapt_batch_size, generator))
        return -scale * grad

    bar = progress_bar(total=config.adapt_steps, desc=f"adapting {task.name}", unit="step")
    try:
        result = adapt(
            MixturePrior(IsotropicGaussian(center.float(), config.sigma), beta=0.0),
            grad_log_lik,
            steps=config.adapt_steps,
            step_size=config.adapt_step_size,
            method=config.adapt_method,
            keep_last=config.adapt_keep_last,
            temperature=config.adapt_temperature,
            init=init.float(),
            seed=seed,
            preconditioner=config.preconditioner,
            cap_gain=config.gain_cap,
            callback=lambda step, theta: bar.update(1),
        )
    finally:
        bar.close()
    return result.samples


@register(
    "taskwise-bayes",
    "Bayesian No-Meta-Train (ablation): SGLD per new task under N(theta0, sigma^2), nothing shared",
    SGLDAdaptConfig,
    family="LiFT ablation",
    state_types=(torch.Tensor,),
    test_time_fields=SGLD_ADAPT_TEST_TIME,
    budget_field=None,
    resumable_mid_run=False,
)
class TaskwiseBayes:
    name = "taskwise-bayes"

    def __init__(self, config: SGLDAdaptConfig | None = None) -> None:
        self.config = config or SGLDAdaptConfig()

    def meta_train(self, problem: MetaProblem, seed: int) -> torch.Tensor:
        return problem.theta0.detach().clone()

    def adapt(self, state: torch.Tensor, task: TaskObjective, seed: int) -> torch.Tensor:
        return sgld_adapt(self.config, task, state, state, seed)
