"""ABML: amortised Bayesian meta-learning (Ravi & Beatson, ICLR 2019).

Meta-parameters: a diagonal Gaussian prior ``p(theta) = N(mu, diag(sigma^2))`` over the adapter,
stored as ``(mu, log sigma)``, started at ``(theta0, log prior_init_std)``.

Per task with ``n`` train examples, the variational posterior ``q = N(m, diag(s^2))`` starts *at the
prior* (``m = mu``, ``log s = log sigma``) and takes ``inner_steps`` SGD steps on the per-example
negative ELBO of the support batch,

    F_S(q) = E_q[ L_S(theta) ] + (tau / n) KL(q || p)        (the ELBO divided by n / tau)

with the expectation estimated by ``mc_samples`` reparametrised draws ``theta = m + s * eps``. The
meta-loss is ``F_Q(q_k)`` on the query batch, differentiated through the inner loop into ``(mu, log
sigma)`` (second order; ``first_order=True`` passes the gradient at ``q_k`` straight through, plus
the KL's direct dependence on the prior). Differences from the paper, stated: no hyperprior on
``(mu, sigma)``, and the likelihood term of the meta-loss uses the query batch only.

Test time: ``q`` starts at the learned prior and follows AdamW on ``F`` over the new task's train split
with the shared budget (``adapt_steps`` / ``adapt_lr`` / ``adapt_batch_size``; ``weight_decay`` applies
to ``m`` only); ``n_samples`` adapters are drawn from the final ``q``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from liftpeft.methods.base import MetaProblem, RunContext, register
from liftpeft.methods.finetune import FINETUNE_TEST_TIME
from liftpeft.methods.meta_learning import (
    MetaLearningConfig,
    TaskVisit,
    run_meta_training,
    second_order_context,
)
from liftpeft.objective import TaskObjective, sample_batch


@dataclass
class AbmlConfig(MetaLearningConfig):
    prior_init_std: float = field(default=0.01, metadata={"help": "initial std sigma of the learned prior"})
    tau: float = field(default=1.0, metadata={"help": "likelihood temperature: the KL weighs tau / n"})
    mc_samples: int = field(default=1, metadata={"help": "reparametrised draws per ELBO estimate"})
    n_samples: int = field(
        default=5, metadata={"help": "adapters drawn from the task posterior at test time"}
    )
    first_order: bool = field(default=False, metadata={"help": "do not differentiate through the inner loop"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.prior_init_std > 0 and math.isfinite(self.prior_init_std)):
            raise ValueError(f"prior_init_std must be a positive finite number, got {self.prior_init_std!r}")
        if not self.tau > 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")
        if self.mc_samples < 1 or self.n_samples < 1:
            raise ValueError(
                f"mc_samples and n_samples must be >= 1, got {self.mc_samples}, {self.n_samples}"
            )


@dataclass
class GaussianPrior:
    """ABML's learned prior: ``mean`` (d,) and ``log_std`` (d,)."""

    mean: torch.Tensor
    log_std: torch.Tensor


def gaussian_kl(
    mean_q: torch.Tensor, log_std_q: torch.Tensor, mean_p: torch.Tensor, log_std_p: torch.Tensor
) -> torch.Tensor:
    """``KL(N(mean_q, s_q^2) || N(mean_p, s_p^2))`` of diagonal Gaussians, summed over coordinates:

    ``sum_i log s_p - log s_q + (s_q^2 + (mean_q - mean_p)^2) / (2 s_p^2) - 1/2`` (a scalar).
    """
    var_ratio = torch.exp(2.0 * (log_std_q - log_std_p))
    mahalanobis = (mean_q - mean_p).square() * torch.exp(-2.0 * log_std_p)
    return (log_std_p - log_std_q + 0.5 * (var_ratio + mahalanobis) - 0.5).sum()


def negative_elbo(
    task: TaskObjective,
    mean: torch.Tensor,
    log_std: torch.Tensor,
    prior: GaussianPrior,
    idx: torch.Tensor,
    kl_weight: float,
    noise: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(F, E_q[L])``: ``F = E_q[L(theta)] + kl_weight KL(q || p)``, one draw per row of ``noise`` (S, d)."""
    thetas = mean + torch.exp(log_std) * noise  # (S, d)
    expected = torch.stack([task.loss(theta, idx, "train") for theta in thetas.unbind(0)]).mean()
    return expected + kl_weight * gaussian_kl(mean, log_std, prior.mean, prior.log_std), expected


def draw_noise(shape: tuple[int, int], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=generator).to(like)


def variational_inner_loop(
    task: TaskObjective,
    prior: GaussianPrior,
    idx: torch.Tensor,
    *,
    steps: int,
    lr: float,
    kl_weight: float,
    mc_samples: int,
    generator: torch.Generator,
    differentiable: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` SGD steps on ``F_S`` from ``q = p``; returns ``(m, log s)`` (differentiable in the prior)."""
    mean, log_std = prior.mean, prior.log_std
    if not differentiable:
        mean, log_std = mean.detach().requires_grad_(True), log_std.detach().requires_grad_(True)
    for _ in range(steps):
        noise = draw_noise((mc_samples, mean.shape[0]), generator, mean)
        loss, _ = negative_elbo(task, mean, log_std, prior, idx, kl_weight, noise)
        grad_mean, grad_log_std = torch.autograd.grad(loss, (mean, log_std), create_graph=differentiable)
        mean, log_std = mean - lr * grad_mean, log_std - lr * grad_log_std
        if not differentiable:
            mean, log_std = mean.detach().requires_grad_(True), log_std.detach().requires_grad_(True)
    return mean, log_std


def abml_meta_gradient(
    task: TaskObjective,
    prior_mean: torch.Tensor,
    prior_log_std: torch.Tensor,
    support: torch.Tensor,
    query: torch.Tensor,
    config: AbmlConfig,
    generator: torch.Generator,
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """``(E_q[L_Q], dF_Q/dmu, dF_Q/dlog sigma)`` for one task."""
    mu = prior_mean.detach().clone().requires_grad_(True)
    log_sigma = prior_log_std.detach().clone().requires_grad_(True)
    prior = GaussianPrior(mu, log_sigma)
    kl_weight = config.tau / task.n_examples("train")
    second_order = not config.first_order
    with second_order_context(second_order):
        mean, log_std = variational_inner_loop(
            task,
            prior,
            support,
            steps=config.inner_steps,
            lr=config.inner_lr,
            kl_weight=kl_weight,
            mc_samples=config.mc_samples,
            generator=generator,
            differentiable=second_order,
        )
        if not second_order:  # straight-through: identity Jacobian of q_k with respect to the prior
            mean = mean.detach() + (mu - mu.detach())
            log_std = log_std.detach() + (log_sigma - log_sigma.detach())
        noise = draw_noise((config.mc_samples, mu.shape[0]), generator, mu)
        loss, expected = negative_elbo(task, mean, log_std, prior, query, kl_weight, noise)
        grad_mu, grad_log_sigma = torch.autograd.grad(loss, (mu, log_sigma))
    return float(expected.detach()), grad_mu, grad_log_sigma


def variational_finetune(
    task: TaskObjective, prior: GaussianPrior, config: AbmlConfig, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Test time: AdamW on ``F`` over the train split from ``q = p``; returns ``(m, log s)`` detached."""
    mean = prior.mean.detach().clone().requires_grad_(True)
    log_std = prior.log_std.detach().clone().requires_grad_(True)
    optimizer = torch.optim.AdamW(
        [{"params": [mean], "weight_decay": config.weight_decay}, {"params": [log_std], "weight_decay": 0.0}],
        lr=config.adapt_lr,
    )
    fixed = GaussianPrior(prior.mean.detach(), prior.log_std.detach())
    generator = torch.Generator().manual_seed(seed)
    n = task.n_examples("train")
    for _ in range(config.adapt_steps):
        idx = sample_batch(n, config.adapt_batch_size, generator)
        noise = draw_noise((config.mc_samples, mean.shape[0]), generator, mean)
        optimizer.zero_grad(set_to_none=True)
        loss, _ = negative_elbo(task, mean, log_std, fixed, idx, config.tau / n, noise)
        loss.backward()
        optimizer.step()
    return mean.detach(), log_std.detach()


@register(
    "abml",
    "ABML: meta-learn a Gaussian prior over the adapter; per task a variational posterior refined on the ELBO",
    AbmlConfig,
    family="Bayesian meta-learning",
    state_types=(GaussianPrior,),
    test_time_fields=FINETUNE_TEST_TIME,
    budget_field="meta_steps",
    resumable_mid_run=True,
)
class Abml:
    name = "abml"

    def __init__(self, config: AbmlConfig | None = None) -> None:
        self.config = config or AbmlConfig()

    def meta_train(self, problem: MetaProblem, seed: int, run: RunContext | None = None) -> GaussianPrior:
        c = self.config

        def task_step(visit: TaskVisit, params: list[torch.Tensor]):
            loss, grad_mu, grad_log_sigma = abml_meta_gradient(
                visit.task, params[0], params[1], visit.support, visit.query, c, visit.generator
            )
            return loss, [grad_mu, grad_log_sigma]

        theta0 = problem.theta0.detach()
        init = [theta0, torch.full_like(theta0, math.log(c.prior_init_std))]
        mean, log_std = run_meta_training(problem, c, seed, init, task_step, "ABML meta-training", run=run)
        return GaussianPrior(mean, log_std)

    def adapt(self, state: GaussianPrior, task: TaskObjective, seed: int) -> torch.Tensor:
        mean, log_std = variational_finetune(task, state, self.config, seed)
        generator = torch.Generator().manual_seed(int(seed) + 1)
        noise = draw_noise((self.config.n_samples, mean.shape[0]), generator, mean)
        return mean + torch.exp(log_std) * noise  # (M, d)
