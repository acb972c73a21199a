"""Non-hierarchical shared Bayesian adapter (LiFT's ablation, Table 7): one adapter for all tasks.

Meta-training samples a single adapter from the union posterior

    log p(theta | D_1..N) = log N(theta; theta0, sigma^2 I) - sum_i (n_i / tau) L_i(theta) + const

by (preconditioned) SGLD: each step draws one task ``i`` uniformly and a minibatch, so
``N (n_i / tau) grad L_i`` is an unbiased estimate of the likelihood's gradient. As in LiFT the run
has ``warmup_steps`` of noise-free Adam on the log posterior, ``burnin_steps`` of SGLD without
keeping samples, then keeps every ``thin``-th iterate (the last ``kept_samples`` of them).

Test time: SGLD on the new task under the prior ``N(theta0, sigma^2 I)`` (LiFT's test-time sampler,
see ``taskwise_bayes``) *initialised at a posterior sample* -- sample ``seed % S`` of the ``S`` kept,
so several seeds average over the posterior. The shared posterior informs the new task through the
starting point only; the prior stays the non-hierarchical model's ``N(theta0, sigma^2)``.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

import torch

from liftpeft.core.schedule import ChainSchedule
from liftpeft.core.sgld import check_step_size, gain_cap, langevin_kernel, recommended_step_size
from liftpeft.methods.base import MetaProblem, register
from liftpeft.methods.taskwise_bayes import SGLD_ADAPT_TEST_TIME, SGLDAdaptConfig, sgld_adapt
from liftpeft.objective import TaskObjective, loss_and_grad, sample_batch
from liftpeft.progress import progress_bar


@dataclass
class SharedBayesConfig(SGLDAdaptConfig):
    meta_steps: int = field(default=2000, metadata={"help": "total steps: warm-up + burn-in + sampling"})
    warmup_steps: int = field(default=500, metadata={"help": "noise-free Adam steps first"})
    warmup_lr: float = field(default=1e-3, metadata={"help": "Adam learning rate of the warm-up"})
    burnin_steps: int = field(default=500, metadata={"help": "SGLD steps before samples are kept"})
    step_size: float = field(default=1e-3, metadata={"help": "SGLD step size of meta-training"})
    temperature: float = field(default=1.0, metadata={"help": "SGLD temperature of meta-training"})
    thin: int = field(default=10, metadata={"help": "keep every thin-th iterate as a posterior sample"})
    kept_samples: int = field(default=20, metadata={"help": "posterior samples kept (the last ones)"})
    meta_batch_size: int = field(default=16, metadata={"help": "examples per meta-training step"})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("warmup_lr", "step_size"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.kept_samples < 1 or self.meta_batch_size < 1:
            raise ValueError("kept_samples and meta_batch_size must be >= 1")
        _ = self.schedule  # validates the phase lengths

    @property
    def schedule(self) -> ChainSchedule:
        return ChainSchedule(self.meta_steps, self.warmup_steps, self.burnin_steps, self.thin, "meta_steps")
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")


@dataclass
class SharedPosterior:
    """State of shared-bayes: ``samples`` (S, d) of the shared adapter, and the prior ``center`` (d,)."""

    samples: torch.Tensor
    center: torch.Tensor


def sample_shared_adapter(problem: MetaProblem, config: SharedBayesConfig, seed: int) -> SharedPosterior:
    """Warm-up, burn-in and sampling of the union posterior; returns the kept samples."""
    if config.preconditioner is None:
        curvature = 1.0 / config.sigma**2
        check_step_size(
            config.step_size,
            curvature,
            f"the shared adapter (its prior N(theta0, sigma^2) has curvature 1/sigma^2 = {curvature:g})",
            f"Lower step_size below {recommended_step_size(curvature):.3g}, raise sigma, "
            "or use preconditioner='rmsprop'.",
        )
    center = problem.theta0.detach().float()
    theta = center.clone()
    data = torch.Generator().manual_seed(int(seed))
    noise = torch.Generator(device=theta.device).manual_seed(
        int(seed) + 1
    )  # Langevin noise on theta's device
    sizes = [t.n_examples("train") for t in problem.train]
    n_tasks = len(problem.train)

    def grad_log_posterior(theta: torch.Tensor) -> torch.Tensor:
        i = int(torch.randint(n_tasks, (1,), generator=data))
        _, grad = loss_and_grad(problem.train[i], theta, sample_batch(sizes[i], config.meta_batch_size, data))
        if not torch.isfinite(grad).all():
            raise FloatingPointError(
                f"non-finite gradient on task {problem.train[i].name!r}; lower step_size"
            )
        return (center - theta) / config.sigma**2 - (n_tasks * sizes[i] / config.tau) * grad

    warm = theta.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([warm], lr=config.warmup_lr)
    # the cap from the prior's curvature 1/sigma^2 (see lift's gain_cap); uncapped pSGLD throws the
    # chain out along directions the data does not constrain
    max_gain = gain_cap(config.step_size, 1.0 / config.sigma**2) if config.gain_cap else None
    kernel = langevin_kernel(config.preconditioner, max_gain=max_gain)
    state = kernel.init(theta)
    kept: collections.deque[torch.Tensor] = collections.deque(maxlen=config.kept_samples)
    schedule = config.schedule
    for step in progress_bar(range(config.meta_steps), desc="shared-bayes sampling", unit="step"):
        if schedule.phase(step) == "warmup":
            warm.grad = -grad_log_posterior(warm.detach())
            optimizer.step()
            theta = warm.detach().clone()
            continue
        grad = grad_log_posterior(theta)
        theta, state = kernel.step(theta, grad, state, config.step_size, noise, config.temperature)
        if schedule.keeps(step):
            kept.append(theta.clone())
    return SharedPosterior(torch.stack(list(kept)), center)


@register(
    "shared-bayes",
    "Non-hierarchical shared adapter (ablation): SGLD on the union posterior, its samples start test-time SGLD",
    SharedBayesConfig,
    family="LiFT ablation",
    state_types=(SharedPosterior,),
    test_time_fields=SGLD_ADAPT_TEST_TIME,
    budget_field="meta_steps",
    resumable_mid_run=False,
)
class SharedBayes:
    name = "shared-bayes"

    def __init__(self, config: SharedBayesConfig | None = None) -> None:
        self.config = config or SharedBayesConfig()

    def meta_train(self, problem: MetaProblem, seed: int) -> SharedPosterior:
        return sample_shared_adapter(problem, self.config, seed)

    def adapt(self, state: SharedPosterior, task: TaskObjective, seed: int) -> torch.Tensor:
        init = state.samples[int(seed) % state.samples.shape[0]]
        return sgld_adapt(self.config, task, state.center, init, seed)
