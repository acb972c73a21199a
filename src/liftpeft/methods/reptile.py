"""Reptile (Nichol, Achiam & Schulman 2018): move the initialisation towards task-adapted weights.

Per visited task, ``k`` SGD steps on fresh minibatches of its train split give ``phi_task``; the
meta-update is the definition

    theta <- theta + eps * (phi_task - theta)        (averaged over the tasks of the step)

implemented as the pseudo-gradient ``theta - phi_task`` fed to the outer optimiser: with the default
``meta_optimizer="sgd"`` and ``meta_lr = eps`` this is exactly the update above; ``"adam"`` is the
variant that rescales it per coordinate. No support / query split is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from liftpeft.methods.base import MetaProblem, RunContext, register
from liftpeft.methods.finetune import FINETUNE_TEST_TIME, finetune_with
from liftpeft.methods.meta_learning import MetaLearningConfig, TaskVisit, run_meta_training, sgd_inner_loop
from liftpeft.objective import TaskObjective, sample_batch


@dataclass
class ReptileConfig(MetaLearningConfig):
    meta_lr: float = field(
        default=0.1, metadata={"help": "Reptile's outer step eps (with meta_optimizer='sgd')"}
    )
    meta_optimizer: str = field(
        default="sgd", metadata={"help": "'sgd' is Reptile's definition; 'adam' rescales the update"}
    )
    inner_steps: int = field(default=5, metadata={"help": "SGD steps (one fresh minibatch each) per task"})


def reptile_target(
    task: TaskObjective,
    theta: torch.Tensor,
    *,
    steps: int,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, float]:
    """``phi_task``: ``steps`` SGD steps from ``theta``, each on a fresh minibatch; and the first loss."""
    n = task.n_examples("train")
    batches = [sample_batch(n, batch_size, generator) for _ in range(steps)]
    phi, first_loss = sgd_inner_loop(task, theta, batches, steps=steps, lr=lr, differentiable=False)
    return phi.detach(), first_loss


@register(
    "reptile",
    "Reptile: move the initialisation towards each task's SGD-adapted weights, then fine-tune",
    ReptileConfig,
    family="meta-learning",
    state_types=(torch.Tensor,),
    test_time_fields=FINETUNE_TEST_TIME,
    budget_field="meta_steps",
    resumable_mid_run=True,
)
class Reptile:
    name = "reptile"

    def __init__(self, config: ReptileConfig | None = None) -> None:
        self.config = config or ReptileConfig()

    def meta_train(self, problem: MetaProblem, seed: int, run: RunContext | None = None) -> torch.Tensor:
        c = self.config

        def task_step(visit: TaskVisit, params: list[torch.Tensor]):
            phi, loss = reptile_target(
                visit.task,
                params[0],
                steps=c.inner_steps,
                lr=c.inner_lr,
                batch_size=c.meta_batch_size,
                generator=visit.generator,
            )
            return loss, [params[0] - phi]

        (init,) = run_meta_training(
            problem, c, seed, [problem.theta0], task_step, "Reptile meta-training", run=run
        )
        return init

    def adapt(self, state: torch.Tensor, task: TaskObjective, seed: int) -> torch.Tensor:
        return finetune_with(self.config, task, state, seed)
