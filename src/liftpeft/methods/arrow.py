"""Arrow: peft's per-token routing over a LoRA zoo (``create_arrow_model``; SPEC section 11).

Meta-training builds the zoo (one adapter per training task, as Zoo-LiFT). Arrow is training-free and
routes every token to its ``top_k`` most similar experts, so it is no single adapter: ``adapt``
returns the zoo itself (the experts, ``(N, d)``) and ``scoring_objective(task)`` scores them as peft's
Arrow model (``ArrowScoring``), built by the task's ``arrow_objective``
(``liftpeft.objective.MergeObjective``; methods never import peft). There is no fine-tuning after it:
the router has no parameters of its own, and training through it would change every expert.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch

from liftpeft.methods.base import MetaProblem, register
from liftpeft.methods.finetune import TaskAdapterConfig, train_task_adapters
from liftpeft.objective import TaskObjective, require_merge

ARROW_TEST_TIME = ("adapt_top_k", "adapt_router_temperature")


@dataclass
class ArrowRoutingConfig(TaskAdapterConfig):
    """The zoo (per-task fine-tuning) and peft's ArrowConfig."""

    adapt_top_k: int = field(default=3, metadata={"help": "experts mixed per token (peft's top_k)"})
    adapt_router_temperature: float = field(
        default=1.0, metadata={"help": "softmax temperature of the expert coefficients"}
    )

    def __post_init__(self) -> None:
        self.check_task_adapter_settings()
        if self.adapt_top_k < 1 or self.adapt_router_temperature <= 0:
            raise ValueError("adapt_top_k must be >= 1 and adapt_router_temperature > 0")


class ArrowScoring:
    """``task`` scored by peft's Arrow model over the experts given as ``thetas`` ``(N, d)``."""

    def __init__(self, task: TaskObjective, config: ArrowRoutingConfig, seed: int, method: str) -> None:
        self.task = require_merge(task, method)
        self.config, self.seed = config, seed
        self.name = task.name
        self.primary_metric = task.primary_metric
        self.higher_is_better = task.higher_is_better
        self._built: tuple[str, TaskObjective] | None = None

    def routed(self, experts: torch.Tensor) -> TaskObjective:
        """The task on the Arrow model over ``experts`` (built once per set of experts)."""
        if experts.dim() != 2:
            raise ValueError(f"arrow scores a zoo of experts (N, d), got shape {tuple(experts.shape)}")
        key = hashlib.sha256(experts.detach().cpu().float().numpy().tobytes()).hexdigest()
        if self._built is None or self._built[0] != key:
            routed = self.task.arrow_objective(
                experts,
                top_k=self.config.adapt_top_k,
                router_temperature=self.config.adapt_router_temperature,
                seed=self.seed,
            )
            self._built = (key, routed)
        return self._built[1]

    def n_examples(self, split: str = "train") -> int:
        return self.task.n_examples(split)

    def loss(
        self, thetas: torch.Tensor, idx: torch.Tensor | None = None, split: str = "train"
    ) -> torch.Tensor:
        return self.routed(thetas).loss(thetas[0], idx, split)

    def evaluate(self, thetas: torch.Tensor, split: str = "test") -> dict[str, float]:
        return self.routed(thetas).evaluate(thetas[0], split)


@register(
    "arrow",
    "peft's Arrow routing (create_arrow_model): each token mixes its top-k most similar per-task adapters",
    ArrowRoutingConfig,
    family="adapter zoo",
    state_types=(torch.Tensor,),
    test_time_fields=ARROW_TEST_TIME,
    budget_field="task_steps",
    resumable_mid_run=False,
)
class Arrow:
    name = "arrow"

    def __init__(self, config: ArrowRoutingConfig | None = None) -> None:
        self.config = config or ArrowRoutingConfig()
        self._seed = 0

    def meta_train(self, problem: MetaProblem, seed: int) -> torch.Tensor:
        return train_task_adapters(problem.train, problem.theta0, self.config, seed)

    def adapt(self, state: torch.Tensor, task: TaskObjective, seed: int) -> torch.Tensor:
        require_merge(task, self.name)
        self._seed = seed  # seeds the router's prototypes (peft's rng_seed) when scoring
        return state.clone()

    def scoring_objective(self, task: TaskObjective) -> ArrowScoring:
        return ArrowScoring(task, self.config, self._seed, self.name)
