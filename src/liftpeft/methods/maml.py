"""MAML and first-order MAML (Finn et al. 2017): meta-learn the adapter's initialisation.

For a task with support batch S and query batch Q, the inner loop takes ``k`` SGD steps

    theta_0 = theta,   theta_{t+1} = theta_t - alpha * grad L_S(theta_t)

and the meta-loss is ``L_Q(theta_k)``. MAML differentiates through the inner loop (second order):

    d L_Q(theta_k) / d theta = prod_{t=k-1..0} (I - alpha * H_S(theta_t)) grad L_Q(theta_k)

FO-MAML drops the Hessians and uses ``grad L_Q(theta_k)`` itself. At test time both fine-tune from
the meta-learned initialisation with the shared fine-tuning budget (``FinetuneConfig``).
"""

from __future__ import annotations

import torch

from liftpeft.methods.base import MetaProblem, RunContext, register
from liftpeft.methods.finetune import FINETUNE_TEST_TIME, finetune_with
from liftpeft.methods.meta_learning import (
    MetaLearningConfig,
    TaskVisit,
    run_meta_training,
    second_order_context,
    sgd_inner_loop,
)
from liftpeft.objective import TaskObjective


def maml_meta_gradient(
    task: TaskObjective,
    theta: torch.Tensor,
    support: torch.Tensor,
    query: torch.Tensor,
    *,
    steps: int,
    lr: float,
    first_order: bool,
) -> tuple[float, torch.Tensor]:
    """``(L_Q(theta_k), dL_Q(theta_k)/dtheta)`` (second order) or its first-order approximation.

    ``theta`` is ``(d,)`` and is not modified; the gradient has its shape.
    """
    leaf = theta.detach().clone().requires_grad_(True)
    with second_order_context(not first_order):
        adapted, _ = sgd_inner_loop(task, leaf, support, steps=steps, lr=lr, differentiable=not first_order)
        loss = task.loss(adapted, query, "train")
        (grad,) = torch.autograd.grad(loss, adapted if first_order else leaf)
    return float(loss.detach()), grad


def meta_learn_init(
    problem: MetaProblem,
    config: MetaLearningConfig,
    seed: int,
    first_order: bool,
    desc: str,
    run: RunContext | None = None,
):
    def task_step(visit: TaskVisit, params: list[torch.Tensor]):
        loss, grad = maml_meta_gradient(
            visit.task,
            params[0],
            visit.support,
            visit.query,
            steps=config.inner_steps,
            lr=config.inner_lr,
            first_order=first_order,
        )
        return loss, [grad]

    (init,) = run_meta_training(problem, config, seed, [problem.theta0], task_step, desc, run=run)
    return init


class _InitMetaLearner:
    """A method whose state is one initialisation ``(d,)``, fine-tuned per task at test time."""

    config: MetaLearningConfig
    first_order: bool = False

    def __init__(self, config: MetaLearningConfig | None = None) -> None:
        self.config = config or MetaLearningConfig()

    def meta_train(self, problem: MetaProblem, seed: int, run: RunContext | None = None) -> torch.Tensor:
        desc = f"{self.name} meta-training"
        return meta_learn_init(problem, self.config, seed, self.first_order, desc, run)

    def adapt(self, state: torch.Tensor, task: TaskObjective, seed: int) -> torch.Tensor:
        return finetune_with(self.config, task, state, seed)


@register(
    "maml",
    "MAML: meta-learn the initialisation through k inner SGD steps (second order), then fine-tune",
    MetaLearningConfig,
    family="meta-learning",
    state_types=(torch.Tensor,),
    test_time_fields=FINETUNE_TEST_TIME,
    budget_field="meta_steps",
    resumable_mid_run=True,
)
class Maml(_InitMetaLearner):
    name = "maml"
    first_order = False


@register(
    "fo-maml",
    "First-order MAML: MAML's meta-gradient without the inner loop's Hessians, then fine-tune",
    MetaLearningConfig,
    family="meta-learning",
    state_types=(torch.Tensor,),
    test_time_fields=FINETUNE_TEST_TIME,
    budget_field="meta_steps",
    resumable_mid_run=True,
)
class FoMaml(_InitMetaLearner):
    name = "fo-maml"
    first_order = True
