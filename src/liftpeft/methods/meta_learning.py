"""Machinery shared by the gradient-based meta-learners (MAML family, Reptile, BMAML, ABML).

A meta-learner holds *meta-parameters* -- an initialisation ``(d,)``, K initialisations, M particles
``(M, d)``, a Gaussian's mean and log-std -- as a list of tensors, and improves them with an outer
optimiser (Adam unless a method says otherwise) on meta-gradients averaged over ``tasks_per_step``
training tasks per meta-step. Each visit of a task draws a *support* batch (the inner loop adapts on
it) and a disjoint *query* batch (the meta-loss is measured on it) from the task's train split.

The inner loops are plain SGD written with ``torch.autograd.grad``: with ``create_graph=True`` the
adapted parameters stay a differentiable function of the meta-parameters (second order); without it
each step is detached (first order).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from liftpeft.methods.base import MetaProblem
from liftpeft.methods.finetune import FinetuneConfig
from liftpeft.objective import TaskObjective
from liftpeft.progress import progress_bar

META_OPTIMIZERS = ("adam", "sgd")


@dataclass
class MetaLearningConfig(FinetuneConfig):
    """Meta-training settings shared by the gradient-based meta-learners.

    Test-time fine-tuning (``adapt_*``, ``weight_decay``) is ``FinetuneConfig``'s: AdamW from the
    meta-learned initialisation, the same budget as No-Meta-Train and Union-Train.
    """

    meta_steps: int = field(default=2000, metadata={"help": "outer (meta-parameter) updates"})
    meta_lr: float = field(default=1e-3, metadata={"help": "learning rate of the outer optimiser"})
    meta_batch_size: int = field(
        default=16, metadata={"help": "examples in each support batch and in each query batch"}
    )
    tasks_per_step: int = field(default=1, metadata={"help": "training tasks averaged per outer update"})
    inner_steps: int = field(default=1, metadata={"help": "SGD steps of the inner loop (paper: 1..5)"})
    inner_lr: float = field(default=5e-3, metadata={"help": "SGD learning rate of the inner loop"})
    meta_optimizer: str = field(default="adam", metadata={"help": "outer optimiser: 'adam' or 'sgd'"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.meta_steps < 0:
            raise ValueError(f"meta_steps must be >= 0, got {self.meta_steps}")
        for name in ("meta_lr", "inner_lr"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        for name in ("meta_batch_size", "tasks_per_step", "inner_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.meta_optimizer not in META_OPTIMIZERS:
            raise ValueError(f"meta_optimizer must be one of {META_OPTIMIZERS}, got {self.meta_optimizer!r}")


@contextlib.contextmanager
def double_backward_safe() -> Iterator[None]:
    """Run attention with the math kernel, whose backward is differentiable again.

    The fused (flash / memory-efficient) scaled-dot-product-attention kernels have no double backward
    (``derivative for aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented``),
    so every second-order computation (MAML through its inner loop, Hessian-vector products) runs
    inside this context. It only affects models that call ``scaled_dot_product_attention``.
    """
    with sdpa_kernel([SDPBackend.MATH]):
        yield


def second_order_context(enabled: bool) -> contextlib.AbstractContextManager[None]:
    return double_backward_safe() if enabled else contextlib.nullcontext()


def support_query(n: int, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint support and query indices, ``batch_size`` each when the split holds ``2 * batch_size``.

    A smaller split is cut in two halves (the support gets the smaller one); a one-example split
    serves as both.
    """
    if n < 1:
        raise ValueError("cannot draw support and query batches from an empty train split")
    perm = torch.randperm(n, generator=generator)
    if n == 1:
        return perm, perm
    cut = min(batch_size, n // 2)
    return perm[:cut], perm[cut : cut + min(batch_size, n - cut)]


def sgd_inner_loop(
    task: TaskObjective,
    theta: torch.Tensor,
    idx: torch.Tensor | Sequence[torch.Tensor],
    *,
    steps: int,
    lr: float,
    differentiable: bool,
) -> tuple[torch.Tensor, float]:
    """``steps`` SGD steps ``theta <- theta - lr * dL_S/dtheta``; returns ``(theta_k, L_S(theta_0))``.

    ``idx`` is one batch used at every step, or one batch per step. With ``differentiable`` the
    result is a differentiable function of ``theta`` (which must then require grad); otherwise each
    step is detached and ``theta_k`` is a fresh leaf that requires grad (first-order MAML).
    """
    batches = [idx] * steps if isinstance(idx, torch.Tensor) else list(idx)
    if len(batches) != steps:
        raise ValueError(f"got {len(batches)} batches for {steps} inner steps")
    if not differentiable:
        theta = theta.detach().requires_grad_(True)
    first_loss = math.nan
    for step, batch in enumerate(batches):
        loss = task.loss(theta, batch, "train")
        if step == 0:
            first_loss = float(loss.detach())
        (grad,) = torch.autograd.grad(loss, theta, create_graph=differentiable)
        theta = theta - lr * grad
        if not differentiable:
            theta = theta.detach().requires_grad_(True)
    return theta, first_loss


@dataclass
class TaskVisit:
    """One training task drawn at one meta-step: its index, objective, support and query batches, and
    the generator every further random draw of the visit must use (reproducibility)."""

    index: int
    task: TaskObjective
    support: torch.Tensor
    query: torch.Tensor
    generator: torch.Generator
    step: int


# A method's work on one visit: ``(meta-loss, one gradient per meta-parameter, or None)``.
TaskStep = Callable[[TaskVisit, list[torch.Tensor]], tuple[float, list[torch.Tensor | None]]]


def make_meta_optimizer(name: str, params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise ValueError(f"meta_optimizer must be one of {META_OPTIMIZERS}, got {name!r}")


def run_meta_training(
    problem: MetaProblem,
    config: MetaLearningConfig,
    seed: int,
    init: Sequence[torch.Tensor],
    task_step: TaskStep,
    desc: str,
) -> list[torch.Tensor]:
    """The outer loop: ``meta_steps`` updates of the meta-parameters ``init`` (returned detached).

    Per step, ``tasks_per_step`` distinct tasks are drawn uniformly; each visit's gradients are
    averaged over the visits that produced one (a ``None`` gradient leaves that meta-parameter out of
    the visit, and a meta-parameter no visit touched is not stepped at all -- Adam's momentum would
    otherwise move it).
    """
    params = [p.detach().clone().requires_grad_(True) for p in init]
    optimizer = make_meta_optimizer(config.meta_optimizer, params, config.meta_lr)
    generator = torch.Generator().manual_seed(int(seed))
    sizes = [t.n_examples("train") for t in problem.train]
    n_tasks = len(problem.train)
    loss_ema = math.nan
    bar = progress_bar(range(config.meta_steps), desc=desc, unit="step")
    for step in bar:
        chosen = torch.randperm(n_tasks, generator=generator)[: min(config.tasks_per_step, n_tasks)]
        sums: list[torch.Tensor | None] = [None] * len(params)
        counts = [0] * len(params)
        losses = []
        for i in chosen.tolist():
            support, query = support_query(sizes[i], config.meta_batch_size, generator)
            visit = TaskVisit(i, problem.train[i], support, query, generator, step)
            loss, grads = task_step(visit, [p.detach() for p in params])
            for j, grad in enumerate(grads):
                if grad is None:
                    continue
                if not torch.isfinite(grad).all():
                    raise FloatingPointError(
                        f"{desc}: non-finite meta-gradient on task {visit.task.name!r} at meta-step {step}; "
                        "lower inner_lr or meta_lr"
                    )
                sums[j] = grad.detach() if sums[j] is None else sums[j] + grad.detach()
                counts[j] += 1
            losses.append(loss)
        for param, total, count in zip(params, sums, counts):
            param.grad = None if total is None else (total / count).to(param)
        optimizer.step()
        mean_loss = sum(losses) / len(losses)
        loss_ema = mean_loss if math.isnan(loss_ema) else 0.95 * loss_ema + 0.05 * mean_loss
        bar.set_postfix(loss=f"{loss_ema:.4f}", refresh=False)
    return [p.detach() for p in params]


def selection_indices(task: TaskObjective, limit: int = 64) -> torch.Tensor:
    """The first ``limit`` train examples: where a method compares its candidate starting points."""
    return torch.arange(min(task.n_examples("train"), limit))
