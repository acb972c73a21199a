"""MAML-Mix and iMAML-Mix: K meta-learned initialisations with hard-EM task assignment.

Meta-parameters: ``K`` initialisations ``theta_1..theta_K`` (all start at the PEFT initialisation).

* Symmetry breaking: for the first ``assignment_warmup_steps`` meta-steps each training task is tied
  to the init of a fixed random balanced partition of the tasks (like k-means' random-partition
  start); identical inits would otherwise tie on every task and the first would win them all.
* Hard EM afterwards: whenever a task is visited, every init is adapted on the support batch by the
  method's inner loop (first order, no graph) and the task is assigned to the init whose adapted
  *query* loss is lowest (E step); only that init receives the task's meta-gradient (M step, MAML's
  or iMAML's). An init no visit chose is not stepped (its Adam state is left untouched).
* New task: each init is adapted by the same inner loop on the task's first (at most 64) train
  examples, the init with the lowest adapted train loss is kept, and it is fine-tuned with the shared
  budget (``FinetuneConfig``).

Cost per visit: ``K`` first-order inner loops plus one meta-gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from liftpeft.methods.base import MetaProblem, RunContext, register
from liftpeft.methods.finetune import FINETUNE_TEST_TIME, finetune_with
from liftpeft.methods.imaml import ImamlConfig, imaml_meta_gradient, proximal_inner_loop
from liftpeft.methods.maml import maml_meta_gradient
from liftpeft.methods.meta_learning import (
    MetaLearningConfig,
    TaskVisit,
    run_meta_training,
    selection_indices,
    sgd_inner_loop,
)
from liftpeft.objective import TaskObjective

# (task, theta (d,), support, query) -> loss of theta adapted on support, measured on query
AdaptedLoss = Callable[[TaskObjective, torch.Tensor, torch.Tensor, torch.Tensor], float]
# (visit, theta (d,)) -> (query loss, meta-gradient (d,))
MetaGradient = Callable[[TaskVisit, torch.Tensor], tuple[float, torch.Tensor]]


@dataclass
class InitMixture:
    """State of MAML-Mix / iMAML-Mix: ``inits`` (K, d) and ``assignments`` (N,), the init each
    training task was last assigned to."""

    inits: torch.Tensor
    assignments: torch.Tensor


def _check_mixture_fields(config) -> None:
    if config.k < 1:
        raise ValueError(f"k (the number of initialisations) must be >= 1, got {config.k}")
    if config.assignment_warmup_steps < 0:
        raise ValueError(f"assignment_warmup_steps must be >= 0, got {config.assignment_warmup_steps}")


_K_HELP = "number K of initialisations"
_WARMUP_HELP = "meta-steps with a fixed random task partition before hard-EM assignment"


@dataclass
class MamlMixConfig(MetaLearningConfig):
    k: int = field(default=5, metadata={"help": _K_HELP})
    assignment_warmup_steps: int = field(default=200, metadata={"help": _WARMUP_HELP})
    first_order: bool = field(default=False, metadata={"help": "use FO-MAML's meta-gradient"})

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_mixture_fields(self)


@dataclass
class ImamlMixConfig(ImamlConfig):
    k: int = field(default=5, metadata={"help": _K_HELP})
    assignment_warmup_steps: int = field(default=200, metadata={"help": _WARMUP_HELP})

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_mixture_fields(self)


def train_init_mixture(
    problem: MetaProblem,
    config: MamlMixConfig | ImamlMixConfig,
    seed: int,
    meta_gradient: MetaGradient,
    adapted_loss: AdaptedLoss,
    desc: str,
    run: RunContext | None = None,
) -> InitMixture:
    """Meta-train ``config.k`` initialisations with hard-EM assignment of the training tasks."""
    k, n_tasks = config.k, len(problem.train)
    partition = torch.randperm(n_tasks, generator=torch.Generator().manual_seed(int(seed) + 1)) % k
    assignments = partition.clone()

    def task_step(visit: TaskVisit, params: list[torch.Tensor]):
        if k > 1 and visit.step >= config.assignment_warmup_steps:
            losses = [adapted_loss(visit.task, p, visit.support, visit.query) for p in params]
            assignments[visit.index] = int(torch.tensor(losses).argmin())
        j = int(assignments[visit.index])
        loss, grad = meta_gradient(visit, params[j])
        grads: list[torch.Tensor | None] = [None] * k
        grads[j] = grad
        return loss, grads

    inits = run_meta_training(
        problem,
        config,
        seed,
        [problem.theta0] * k,
        task_step,
        desc,
        run=run,
        carried={"assignments": assignments},
    )
    return InitMixture(torch.stack(inits), assignments)


def select_init(state: InitMixture, task: TaskObjective, adapted_loss: AdaptedLoss) -> int:
    """The init whose inner-loop-adapted loss on the task's first train examples is lowest."""
    if state.inits.shape[0] == 1:
        return 0
    idx = selection_indices(task)
    losses = [adapted_loss(task, init, idx, idx) for init in state.inits]
    return int(torch.tensor(losses).argmin())


def sgd_adapted_loss(config: MetaLearningConfig) -> AdaptedLoss:
    def adapted_loss(task, theta, support, query) -> float:
        adapted, _ = sgd_inner_loop(
            task, theta, support, steps=config.inner_steps, lr=config.inner_lr, differentiable=False
        )
        with torch.no_grad():
            return float(task.loss(adapted.detach(), query, "train"))

    return adapted_loss


def proximal_adapted_loss(config: ImamlConfig) -> AdaptedLoss:
    def adapted_loss(task, theta, support, query) -> float:
        phi = proximal_inner_loop(
            task, theta, support, steps=config.inner_steps, lr=config.inner_lr, lam=config.lam
        )
        with torch.no_grad():
            return float(task.loss(phi, query, "train"))

    return adapted_loss


class _InitMixtureMethod:
    config: MamlMixConfig | ImamlMixConfig

    def _meta_gradient(self, visit: TaskVisit, theta: torch.Tensor) -> tuple[float, torch.Tensor]:
        raise NotImplementedError

    def _adapted_loss(self) -> AdaptedLoss:
        raise NotImplementedError

    def meta_train(self, problem: MetaProblem, seed: int, run: RunContext | None = None) -> InitMixture:
        desc = f"{self.name} meta-training"
        return train_init_mixture(
            problem, self.config, seed, self._meta_gradient, self._adapted_loss(), desc, run
        )

    def adapt(self, state: InitMixture, task: TaskObjective, seed: int) -> torch.Tensor:
        j = select_init(state, task, self._adapted_loss())
        return finetune_with(self.config, task, state.inits[j], seed)


@register(
    "maml-mix",
    "MAML-Mix: K MAML initialisations, tasks assigned by lowest adapted loss (hard EM); fine-tune the best",
    MamlMixConfig,
    family="meta-learning",
    state_types=(InitMixture,),
    test_time_fields=FINETUNE_TEST_TIME,
    budget_field="meta_steps",
    resumable_mid_run=True,
)
class MamlMix(_InitMixtureMethod):
    name = "maml-mix"

    def __init__(self, config: MamlMixConfig | None = None) -> None:
        self.config = config or MamlMixConfig()

    def _meta_gradient(self, visit: TaskVisit, theta: torch.Tensor) -> tuple[float, torch.Tensor]:
        c = self.config
        return maml_meta_gradient(
            visit.task,
            theta,
            visit.support,
            visit.query,
            steps=c.inner_steps,
            lr=c.inner_lr,
            first_order=c.first_order,
        )

    def _adapted_loss(self) -> AdaptedLoss:
        return sgd_adapted_loss(self.config)


@register(
    "imaml-mix",
    "iMAML-Mix: K iMAML initialisations, tasks assigned by lowest adapted loss (hard EM); fine-tune the best",
    ImamlMixConfig,
    family="meta-learning",
    state_types=(InitMixture,),
    test_time_fields=FINETUNE_TEST_TIME,
    budget_field="meta_steps",
    resumable_mid_run=True,
)
class ImamlMix(_InitMixtureMethod):
    name = "imaml-mix"

    def __init__(self, config: ImamlMixConfig | None = None) -> None:
        self.config = config or ImamlMixConfig()

    def _meta_gradient(self, visit: TaskVisit, theta: torch.Tensor) -> tuple[float, torch.Tensor]:
        c = self.config
        return imaml_meta_gradient(
            visit.task,
            theta,
            visit.support,
            visit.query,
            steps=c.inner_steps,
            lr=c.inner_lr,
            lam=c.lam,
            cg_steps=c.cg_steps,
        )

    def _adapted_loss(self) -> AdaptedLoss:
        return proximal_adapted_loss(self.config)
