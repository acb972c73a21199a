"""BMAML: Bayesian MAML (Yoon et al. 2018) -- M adapter particles moved by SVGD.

Meta-parameters: the initial particles ``Theta_0`` (M, d), started at the PEFT initialisation plus
``N(0, particle_init_std^2)`` noise (identical particles would never separate: SVGD's repulsion
vanishes between equal points).

**Inner loop (SVGD, Liu & Wang 2016).** The task posterior is ``log p(theta | D) = -(n / tau) L(theta)``
(``n`` the task's train size; the meta-learned initial particles play the prior's role). With the RBF
kernel ``k(x, y) = exp(-||x - y||^2 / h)`` and the median heuristic ``h = med^2 / log M`` (``med`` the
median pairwise distance; treated as a constant), each particle moves along

    phi(x_i) = 1/M sum_j [ k(x_j, x_i) grad log p(x_j) + grad_{x_j} k(x_j, x_i) ]

with step ``inner_lr * tau / n``, i.e.

    x_i <- x_i + (inner_lr / M) * sum_j [ k_ij (-grad L(x_j)) + (tau / n) grad_{x_j} k(x_j, x_i) ]

so that ``inner_lr`` means what it means for MAML: for ``M = 1`` this is exactly MAML's SGD step
(particles far apart from each other each move at ``inner_lr / M``).

**Meta-loss.** ``meta_loss="chaser"`` (BMAML's main objective, the default): the *follower*
``Theta_k`` (k SVGD steps on the support batch, differentiable in ``Theta_0``) chases the *leader*
``Theta_{k+s}`` (``leader_steps`` more SVGD steps on support and query together, stop-gradient):
``1/2 sum_m ||theta_k^m - sg(theta_{k+s}^m)||^2``. ``meta_loss="bfa"`` (BMAML's simpler Bayesian Fast
Adaptation): ``-(1/n_Q) log (1/M sum_m p(D_Q | theta_k^m))`` with ``-log p(D_Q|theta) = n_Q L_Q(theta)``,
i.e. the query negative log-likelihood of the particle ensemble.

**Test time.** SVGD from the meta-learned particles on the new task's train split, with the SVGD
direction fed to AdamW (as in Liu & Wang's code, which uses AdaGrad) with the shared fine-tuning
budget ``adapt_steps`` / ``adapt_lr`` / ``adapt_batch_size``; the M particles are the samples.
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

META_LOSSES = ("chaser", "bfa")


@dataclass
class BmamlConfig(MetaLearningConfig):
    n_particles: int = field(default=5, metadata={"help": "M: adapter particles (the paper: 5)"})
    particle_init_std: float = field(
        default=0.01, metadata={"help": "std of the noise around theta0 that starts the particles apart"}
    )
    tau: float = field(default=1.0, metadata={"help": "likelihood temperature: posterior -(n/tau) L"})
    meta_loss: str = field(
        default="chaser", metadata={"help": "'chaser' (BMAML) or 'bfa' (ensemble query NLL)"}
    )
    leader_steps: int = field(default=1, metadata={"help": "s: extra SVGD steps of the chaser's leader"})
    first_order: bool = field(
        default=False, metadata={"help": "do not differentiate through the SVGD inner loop"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_particles < 1:
            raise ValueError(f"n_particles must be >= 1, got {self.n_particles}")
        if not self.particle_init_std >= 0:
            raise ValueError(f"particle_init_std must be >= 0, got {self.particle_init_std}")
        if not self.tau > 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")
        if self.meta_loss not in META_LOSSES:
            raise ValueError(f"meta_loss must be one of {META_LOSSES}, got {self.meta_loss!r}")
        if self.leader_steps < 1:
            raise ValueError(f"leader_steps must be >= 1, got {self.leader_steps}")


def median_bandwidth(particles: torch.Tensor) -> float:
    """Median-heuristic bandwidth ``h = med^2 / log M`` of ``particles`` (M, d); 1 if undefined."""
    m = particles.shape[0]
    if m < 2:
        return 1.0
    dist = torch.pdist(particles.detach().double())  # (M (M-1) / 2,)
    med = float(dist.median())
    return med**2 / math.log(m) if med > 0 else 1.0


def rbf_kernel(particles: torch.Tensor, bandwidth: float) -> tuple[torch.Tensor, torch.Tensor]:
    """RBF kernel matrix ``K_ij = exp(-||x_i - x_j||^2 / h)`` (M, M) and the repulsion (M, d).

    ``repulsion_i = sum_j grad_{x_j} k(x_j, x_i) = (2 / h) sum_j k_ij (x_i - x_j)``.
    """
    norms = particles.square().sum(1)  # (M,)
    sq = (norms[:, None] + norms[None, :] - 2.0 * particles @ particles.T).clamp_min(0.0)  # (M, M)
    kernel = torch.exp(-sq / bandwidth)
    rowsum = kernel.sum(1, keepdim=True)  # (M, 1)
    repulsion = (2.0 / bandwidth) * (particles * rowsum - kernel @ particles)  # (M, d)
    return kernel, repulsion


def svgd_direction(particles: torch.Tensor, score: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """SVGD's ``phi(x_i) = 1/M sum_j [k_ij score_j + grad_{x_j} k(x_j, x_i)]`` (M, d).

    ``score`` (M, d) holds ``grad log p`` at each particle.
    """
    kernel, repulsion = rbf_kernel(particles, bandwidth)
    return (kernel @ score + repulsion) / particles.shape[0]


def particle_grads(
    task: TaskObjective, particles: torch.Tensor, idx: torch.Tensor, create_graph: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-particle mean losses (M,) and their gradients (M, d) on batch ``idx``."""
    losses = torch.stack([task.loss(p, idx, "train") for p in particles.unbind(0)])
    (grads,) = torch.autograd.grad(losses.sum(), particles, create_graph=create_graph)
    return losses, grads


def svgd_inner_loop(
    task: TaskObjective,
    particles: torch.Tensor,
    idx: torch.Tensor,
    *,
    steps: int,
    lr: float,
    scale: float,
    differentiable: bool,
) -> tuple[torch.Tensor, float]:
    """``steps`` SVGD steps on ``log p = -scale * L`` with step ``lr / scale`` (see the module docstring).

    Returns the particles (M, d) and the particles' mean loss before the first step.
    """
    if not differentiable:
        particles = particles.detach().requires_grad_(True)
    first_loss = math.nan
    for step in range(steps):
        losses, grads = particle_grads(task, particles, idx, differentiable)
        if step == 0:
            first_loss = float(losses.detach().mean())
        direction = svgd_direction(particles, -scale * grads, median_bandwidth(particles))
        particles = particles + (lr / scale) * direction
        if not differentiable:
            particles = particles.detach().requires_grad_(True)
    return particles, first_loss


def bmaml_meta_gradient(
    task: TaskObjective,
    particles: torch.Tensor,
    support: torch.Tensor,
    query: torch.Tensor,
    config: BmamlConfig,
) -> tuple[float, torch.Tensor]:
    """``(reported loss, d meta-loss / d Theta_0)`` for one task; ``particles`` (M, d).

    The reported loss is the followers' mean loss on support and query (chaser; free, the leader's
    first step computes it) or the ensemble query NLL (BFA).
    """
    scale = task.n_examples("train") / config.tau
    leaf = particles.detach().clone().requires_grad_(True)
    second_order = not config.first_order
    with second_order_context(second_order):
        follower, _ = svgd_inner_loop(
            task,
            leaf,
            support,
            steps=config.inner_steps,
            lr=config.inner_lr,
            scale=scale,
            differentiable=second_order,
        )
        wrt = leaf if second_order else follower
        if config.meta_loss == "chaser":
            union = torch.cat([support, query]).unique()
            leader, reported = svgd_inner_loop(
                task,
                follower,
                union,
                steps=config.leader_steps,
                lr=config.inner_lr,
                scale=scale,
                differentiable=False,
            )
            meta_loss = 0.5 * (follower - leader.detach()).square().sum()
            (grad,) = torch.autograd.grad(meta_loss, wrt)
            return reported, grad
        losses = torch.stack([task.loss(p, query, "train") for p in follower.unbind(0)])  # (M,)
        n_query = len(query)
        nll = -(torch.logsumexp(-n_query * losses, 0) - math.log(len(losses))) / n_query
        (grad,) = torch.autograd.grad(nll, wrt)
        return float(nll.detach()), grad


def svgd_finetune(
    task: TaskObjective, particles: torch.Tensor, config: BmamlConfig, seed: int
) -> torch.Tensor:
    """Test-time SVGD: AdamW on ``-phi / scale`` from ``particles`` (M, d); returns (M, d)."""
    scale = task.n_examples("train") / config.tau
    leaf = particles.detach().clone().requires_grad_(True)
    optimizer = torch.optim.AdamW([leaf], lr=config.adapt_lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    n = task.n_examples("train")
    for _ in range(config.adapt_steps):
        idx = sample_batch(n, config.adapt_batch_size, generator)
        _, grads = particle_grads(task, leaf, idx, create_graph=False)
        with torch.no_grad():
            direction = svgd_direction(leaf, -scale * grads, median_bandwidth(leaf))
        optimizer.zero_grad(set_to_none=True)
        leaf.grad = -direction / scale
        optimizer.step()
    return leaf.detach()


@register(
    "bmaml",
    "BMAML: M adapter particles, SVGD inner loop, meta-learned initial particles (chaser loss)",
    BmamlConfig,
    family="Bayesian meta-learning",
    state_types=(torch.Tensor,),
    test_time_fields=FINETUNE_TEST_TIME,
    budget_field="meta_steps",
    resumable_mid_run=True,
)
class Bmaml:
    name = "bmaml"

    def __init__(self, config: BmamlConfig | None = None) -> None:
        self.config = config or BmamlConfig()

    def initial_particles(self, theta0: torch.Tensor, seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(int(seed) + 2)
        noise = torch.randn((self.config.n_particles, theta0.shape[0]), generator=generator)
        return theta0.detach()[None] + self.config.particle_init_std * noise.to(theta0)  # (M, d)

    def meta_train(self, problem: MetaProblem, seed: int, run: RunContext | None = None) -> torch.Tensor:
        c = self.config

        def task_step(visit: TaskVisit, params: list[torch.Tensor]):
            loss, grad = bmaml_meta_gradient(visit.task, params[0], visit.support, visit.query, c)
            return loss, [grad]

        init = [self.initial_particles(problem.theta0, seed)]
        (particles,) = run_meta_training(problem, c, seed, init, task_step, "BMAML meta-training", run=run)
        return particles

    def adapt(self, state: torch.Tensor, task: TaskObjective, seed: int) -> torch.Tensor:
        return svgd_finetune(task, state, self.config, seed)
