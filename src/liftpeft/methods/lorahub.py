"""LoraHub (Huang et al., 2024, "LoraHub: Efficient Cross-Task Generalization via Dynamic LoRA
Composition"), re-implemented from the paper: a gradient-free search of the composition weights of
a LoRA zoo on the new task's few examples (SPEC section 11).

The composed adapter is ``theta(w) = sum_i w_i theta_i``: for LoRA this is the paper's composition
``A = sum_i w_i A_i``, ``B = sum_i w_i B_i`` (the flat vector holds the A and B matrices). The
weights minimise ``support loss(theta(w)) + l1 * mean_i |w_i|`` over the box ``[-bound, bound]^N``
by CMA-ES (the ``cma`` package; the paper uses nevergrad's gradient-free optimiser with the same
penalty, bounds ``[-1.5, 1.5]``, a start at ``w = 0``, 40 evaluations and 20 adapters drawn at
random from a larger zoo: the defaults here). Only
the loss is needed, so it runs on causal, seq2seq and encoder models alike (the original code is
seq2seq-only). The zoo is built by meta-training: one adapter per training task (as Zoo-LiFT).
``adapt_steps > 0`` fine-tunes the composed adapter afterwards (No-Meta's budget: 100).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from liftpeft.methods.base import MetaProblem, register
from liftpeft.methods.finetune import FinetuneConfig, TaskAdapterConfig, finetune_with, train_task_adapters
from liftpeft.methods.zoo_weights import support_loss
from liftpeft.objective import TaskObjective

LORAHUB_TEST_TIME = (
    "adapt_steps",
    "adapt_lr",
    "adapt_batch_size",
    "adapt_evaluations",
    "adapt_l1",
    "adapt_bound",
    "adapt_sigma",
    "adapt_pool_size",
)


@dataclass
class LoraHubConfig(TaskAdapterConfig, FinetuneConfig):
    """The zoo (per-task fine-tuning), LoraHub's weight search, and the optional fine-tuning after it."""

    adapt_steps: int = field(default=0, metadata={"help": "AdamW steps after the composition (0: none)"})
    adapt_evaluations: int = field(default=40, metadata={"help": "support-loss evaluations of the search"})
    adapt_l1: float = field(default=0.05, metadata={"help": "L1 penalty on the mean absolute weight"})
    adapt_bound: float = field(default=1.5, metadata={"help": "each weight stays in [-bound, bound]"})
    adapt_sigma: float = field(default=0.5, metadata={"help": "CMA-ES initial step size"})
    adapt_pool_size: int = field(
        default=20, metadata={"help": "adapters composed, drawn at random from a larger zoo (0: all)"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_task_adapter_settings()
        if (
            self.adapt_evaluations < 1
            or self.adapt_l1 < 0
            or self.adapt_bound <= 0
            or self.adapt_sigma <= 0
            or self.adapt_pool_size < 0
        ):
            raise ValueError(
                "adapt_evaluations must be >= 1, adapt_l1 >= 0, adapt_bound > 0, adapt_sigma > 0 "
                "and adapt_pool_size >= 0"
            )


def compose(zoo: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_i w_i theta_i`` of the zoo ``(N, d)``: LoraHub's composition, ``(d,)``."""
    return weights.to(zoo) @ zoo


def search_weights(
    zoo: torch.Tensor,
    loss: Callable[[torch.Tensor], float],
    *,
    evaluations: int,
    l1: float,
    bound: float,
    sigma: float,
    seed: int,
) -> tuple[torch.Tensor, float]:
    """CMA-ES on ``loss(compose(zoo, w)) + l1 * mean|w|`` from ``w = 0``; returns (best w, its objective)."""
    try:
        import cma
    except ImportError as err:
        raise ImportError(
            "lorahub needs the cma package: pip install 'liftpeft[zoo]' (or pip install cma)"
        ) from err
    n = zoo.shape[0]

    def objective(w) -> float:
        weights = torch.as_tensor(w, dtype=torch.float64)
        return loss(compose(zoo, weights)) + l1 * float(weights.abs().mean())

    options = {
        "bounds": [-bound, bound],
        "seed": seed + 1,  # cma draws a random seed for 0
        "maxfevals": evaluations,
        "verbose": -9,
    }
    # cma needs two dimensions at least: a one-adapter zoo searches (w, 0) and ignores the pad
    pad = n == 1
    f = (lambda w: objective(w[:1])) if pad else objective
    strategy = cma.CMAEvolutionStrategy([0.0] * (2 if pad else n), sigma, options)
    best_w, best = torch.zeros(n, dtype=torch.float64), float("inf")
    evaluated = 0
    while not strategy.stop() and evaluated < evaluations:
        candidates = strategy.ask()[: evaluations - evaluated]
        values = [f(c) for c in candidates]
        evaluated += len(values)
        for c, v in zip(candidates, values):
            if v < best:
                best, best_w = v, torch.as_tensor(c[:n], dtype=torch.float64)
        if len(values) < strategy.popsize:
            break
        strategy.tell(candidates, values)
    return best_w, best


@register(
    "lorahub",
    "LoraHub: CMA-ES search of the per-task adapters' composition weights on the support set (L1, bounded)",
    LoraHubConfig,
    family="adapter zoo",
    state_types=(torch.Tensor,),
    test_time_fields=LORAHUB_TEST_TIME,
    budget_field="task_steps",
    resumable_mid_run=False,
)
class LoraHub:
    name = "lorahub"

    def __init__(self, config: LoraHubConfig | None = None) -> None:
        self.config = config or LoraHubConfig()

    def meta_train(self, problem: MetaProblem, seed: int) -> torch.Tensor:
        return train_task_adapters(problem.train, problem.theta0, self.config, seed)

    def weights(self, zoo: torch.Tensor, task: TaskObjective, seed: int) -> torch.Tensor:
        """The searched composition weights ``(N,)`` for ``task``."""
        c = self.config
        weights, _ = search_weights(
            zoo,
            lambda theta: support_loss(task, theta.float(), c.adapt_batch_size),
            evaluations=c.adapt_evaluations,
            l1=c.adapt_l1,
            bound=c.adapt_bound,
            sigma=c.adapt_sigma,
            seed=seed,
        )
        return weights

    def pool(self, zoo: torch.Tensor, seed: int) -> torch.Tensor:
        """The adapters composed: all of them, or ``adapt_pool_size`` drawn at random (the paper's 20)."""
        size = self.config.adapt_pool_size
        if size == 0 or size >= len(zoo):
            return zoo
        chosen = torch.randperm(len(zoo), generator=torch.Generator().manual_seed(seed))[:size]
        return zoo[chosen.sort().values]

    def adapt(self, state: torch.Tensor, task: TaskObjective, seed: int) -> torch.Tensor:
        zoo = self.pool(state, seed)
        theta = compose(zoo, self.weights(zoo, task, seed)).float()
        if self.config.adapt_steps == 0:
            return theta[None]
        return finetune_with(self.config, task, theta, seed)
