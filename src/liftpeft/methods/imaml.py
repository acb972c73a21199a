"""iMAML (Rajeswaran et al. 2019): meta-gradients through the implicit function theorem.

The inner problem is proximally regularised towards the meta-parameters ``theta``:

    phi*(theta) = argmin_phi  L_S(phi) + (lambda / 2) ||phi - theta||^2

At its minimum ``grad L_S(phi*) + lambda (phi* - theta) = 0``, so ``d phi*/d theta = (I + H/lambda)^-1``
with ``H`` the Hessian of ``L_S`` at ``phi*``, and the meta-gradient of ``L_Q(phi*(theta))`` is

    v = (I + H / lambda)^-1 grad L_Q(phi*)

found by conjugate gradient with Hessian-vector products (no inner-loop backpropagation: memory
does not grow with the number of inner steps). The inner problem is solved approximately by
``inner_steps`` gradient steps of size ``inner_lr`` from ``theta``; the implicit gradient assumes
its stationarity condition holds, so it is only as accurate as that solve (few small steps leave
``phi`` close to ``theta``, barely adapted).
With a non-convex loss ``I + H/lambda`` can be indefinite; CG is then truncated at ``cg_steps``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from liftpeft.methods.base import MetaProblem, RunContext, register
from liftpeft.methods.finetune import FINETUNE_TEST_TIME, finetune_with
from liftpeft.methods.meta_learning import (
    MetaLearningConfig,
    TaskVisit,
    double_backward_safe,
    run_meta_training,
)
from liftpeft.objective import TaskObjective, loss_and_grad


@dataclass
class ImamlConfig(MetaLearningConfig):
    inner_steps: int = field(default=5, metadata={"help": "gradient steps on the proximal inner problem"})
    lam: float = field(default=1.0, metadata={"help": "proximal strength lambda of the inner problem"})
    cg_steps: int = field(default=5, metadata={"help": "conjugate-gradient iterations per meta-gradient"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.lam > 0 and math.isfinite(self.lam)):
            raise ValueError(
                f"lam (the proximal strength) must be a positive finite number, got {self.lam!r}"
            )
        if self.cg_steps < 1:
            raise ValueError(f"cg_steps must be >= 1, got {self.cg_steps}")


def proximal_inner_loop(
    task: TaskObjective, theta: torch.Tensor, idx: torch.Tensor, *, steps: int, lr: float, lam: float
) -> torch.Tensor:
    """Gradient descent on ``L_S(phi) + lam/2 ||phi - theta||^2`` from ``phi = theta``; returns ``phi`` (d,)."""
    anchor = theta.detach()
    phi = anchor.clone()
    for _ in range(steps):
        _, grad = loss_and_grad(task, phi, idx)
        phi = phi - lr * (grad + lam * (phi - anchor))
    return phi


def hessian_vector_product(
    task: TaskObjective, theta: torch.Tensor, idx: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``v -> H v`` with ``H`` the Hessian of ``L(theta)`` on batch ``idx``: one forward pass, reused.

    The returned function keeps the graph of ``grad L`` alive; each call is one double backward.
    """
    leaf = theta.detach().clone().requires_grad_(True)
    with double_backward_safe():
        (grad,) = torch.autograd.grad(task.loss(leaf, idx, "train"), leaf, create_graph=True)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        with double_backward_safe():
            (out,) = torch.autograd.grad(grad, leaf, grad_outputs=v, retain_graph=True)
        return out

    return hvp


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, steps: int, tol: float = 1e-10
) -> torch.Tensor:
    """Approximately solve ``A x = b`` for symmetric positive definite ``A`` given as ``matvec``, from ``x = 0``.

    Exact after ``d`` iterations in exact arithmetic; stops early once ``||r||^2 <= tol * ||b||^2``.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = r.dot(r)
    threshold = tol * rs
    for _ in range(steps):
        if rs <= threshold:
            break
        ap = matvec(p)
        alpha = rs / p.dot(ap)
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = r.dot(r)
        p = r + (rs_new / rs) * p
        rs = rs_new
    return x


def imaml_meta_gradient(
    task: TaskObjective,
    theta: torch.Tensor,
    support: torch.Tensor,
    query: torch.Tensor,
    *,
    steps: int,
    lr: float,
    lam: float,
    cg_steps: int,
) -> tuple[float, torch.Tensor]:
    """``(L_Q(phi), (I + H_S(phi)/lam)^-1 grad L_Q(phi))`` with ``phi`` the approximate proximal solution."""
    phi = proximal_inner_loop(task, theta, support, steps=steps, lr=lr, lam=lam)
    loss, grad_query = loss_and_grad(task, phi, query)
    hvp = hessian_vector_product(task, phi, support)
    meta_grad = conjugate_gradient(lambda v: v + hvp(v) / lam, grad_query, cg_steps)
    return loss, meta_grad


def imaml_task_step(config: ImamlConfig):
    def task_step(visit: TaskVisit, params: list[torch.Tensor]):
        loss, grad = imaml_meta_gradient(
            visit.task,
            params[0],
            visit.support,
            visit.query,
            steps=config.inner_steps,
            lr=config.inner_lr,
            lam=config.lam,
            cg_steps=config.cg_steps,
        )
        return loss, [grad]

    return task_step


@register(
    "imaml",
    "iMAML: meta-learn the initialisation by implicit gradients of a proximal inner problem (CG), then fine-tune",
    ImamlConfig,
    family="meta-learning",
    state_types=(torch.Tensor,),
    test_time_fields=FINETUNE_TEST_TIME,
    budget_field="meta_steps",
    resumable_mid_run=True,
)
class Imaml:
    name = "imaml"

    def __init__(self, config: ImamlConfig | None = None) -> None:
        self.config = config or ImamlConfig()

    def meta_train(self, problem: MetaProblem, seed: int, run: RunContext | None = None) -> torch.Tensor:
        (init,) = run_meta_training(
            problem,
            self.config,
            seed,
            [problem.theta0],
            imaml_task_step(self.config),
            "iMAML meta-training",
            run=run,
        )
        return init

    def adapt(self, state: torch.Tensor, task: TaskObjective, seed: int) -> torch.Tensor:
        return finetune_with(self.config, task, state, seed)
