"""Merge baselines for a LoRA zoo, running peft's own ``add_weighted_adapter`` (SPEC section 11).

Meta-training builds the zoo: one adapter per training task, fine-tuned from the PEFT initialisation
(``train_task_adapters``, as Zoo-LiFT). Adapting to a new task merges the zoo with peft's code
(``combination_type`` linear, ties, dare_ties or svd) through the task's ``merge_adapters``
(``liftpeft.objective.MergeObjective``, implemented by ``peft_integration.merge``): methods never
import peft. The weights are uniform (``1/N`` each) or chosen on the new task's support set
(``adapt_weights="support"``: rank the adapters by their own support loss, merge the best ``m`` with
weights ``1/m`` for ``m = 1, 2, 4, ..., N`` and keep the merge of lowest support loss). ``adapt_steps > 0``
fine-tunes the merge with AdamW afterwards (No-Meta's budget: ``adapt_steps=100``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from liftpeft.methods.base import MetaProblem, register
from liftpeft.methods.finetune import FinetuneConfig, TaskAdapterConfig, finetune_with, train_task_adapters
from liftpeft.methods.zoo_weights import support_loss, uniform_weights
from liftpeft.objective import MergeObjective, TaskObjective, require_merge

ZOO_MERGE_TEST_TIME = ("adapt_steps", "adapt_lr", "adapt_batch_size", "adapt_weights", "adapt_density")
WEIGHT_CHOICES = ("uniform", "support")


@dataclass
class ZooMergeConfig(TaskAdapterConfig, FinetuneConfig):
    """The zoo (per-task fine-tuning), how its merge is weighted, and the optional fine-tuning after it."""

    adapt_steps: int = field(default=0, metadata={"help": "AdamW steps after the merge (0: the merge as is)"})
    adapt_weights: str = field(
        default="uniform",
        metadata={"help": "uniform (1/N each) | support (best top-m merge on the support set)"},
    )
    adapt_density: float = field(
        default=0.5, metadata={"help": "fraction of entries kept by ties / dare_ties (peft's density)"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_task_adapter_settings()
        if self.adapt_weights not in WEIGHT_CHOICES:
            raise ValueError(f"adapt_weights must be one of {WEIGHT_CHOICES}, got {self.adapt_weights!r}")
        if not 0.0 < self.adapt_density <= 1.0:
            raise ValueError(f"adapt_density must be in (0, 1], got {self.adapt_density}")


def grid_sizes(n: int) -> list[int]:
    """How many of the best adapters the support grid merges: 1, 2, 4, ... and ``n`` itself."""
    return sorted({min(2**i, n) for i in range(n.bit_length() + 1)})


class ZooMerge:
    """One of peft's merges of the zoo; subclasses fix ``combination_type``."""

    name = "merge"
    combination_type = "linear"

    def __init__(self, config: ZooMergeConfig | None = None) -> None:
        self.config = config or ZooMergeConfig()
        self._uniform: dict[str, tuple] = {}  # the last uniform merge: (zoo, backbone, seed, merged)

    def meta_train(self, problem: MetaProblem, seed: int) -> torch.Tensor:
        return train_task_adapters(problem.train, problem.theta0, self.config, seed)

    def merge(self, zoo: torch.Tensor, task: MergeObjective, weights: list[float], seed: int) -> torch.Tensor:
        density = self.config.adapt_density if "ties" in self.combination_type else None
        return task.merge_adapters(zoo, weights, self.combination_type, density=density, seed=seed)

    def uniform_merge(self, zoo: torch.Tensor, task: MergeObjective, seed: int) -> torch.Tensor:
        """The uniform merge of the whole zoo: the same for every task on one backbone, so it is computed
        once per zoo, backbone and seed (peft's merge of 150 adapters takes seconds; a grid asks for it
        on every test task)."""
        backbone = getattr(task, "backbone", task)
        hit = self._uniform.get("key")
        if hit is None or hit[0] is not zoo or hit[1] is not backbone or hit[2] != seed:
            # the zoo and backbone are held, so ``is`` cannot match a new object at a reused address
            merged = self.merge(zoo, task, uniform_weights(len(zoo)), seed)
            self._uniform["key"] = (zoo, backbone, seed, merged)
        return self._uniform["key"][3].clone()

    def choose(self, zoo: torch.Tensor, task: TaskObjective, seed: int) -> torch.Tensor:
        """The merge the weights setting asks for, ``(d,)``."""
        merger = require_merge(task, self.name)
        if self.config.adapt_weights == "uniform":
            return self.uniform_merge(zoo, merger, seed)
        batch = self.config.adapt_batch_size
        order = sorted(range(len(zoo)), key=lambda i: support_loss(task, zoo[i], batch))
        best, best_loss = None, float("inf")
        for m in grid_sizes(len(zoo)):
            if m == len(zoo):  # every adapter: the uniform merge, whatever the order
                candidate = self.uniform_merge(zoo, merger, seed)
            else:
                candidate = self.merge(zoo[order[:m]], merger, uniform_weights(m), seed)
            loss = support_loss(task, candidate, batch)
            if loss < best_loss:
                best, best_loss = candidate, loss
        return best

    def adapt(self, state: torch.Tensor, task: TaskObjective, seed: int) -> torch.Tensor:
        theta = self.choose(state, task, seed)
        if self.config.adapt_steps == 0:
            return theta[None]
        return finetune_with(self.config, task, theta, seed)


def _register(combination_type: str, label: str):
    name = f"merge-{combination_type.replace('_', '-')}"
    cls = type(f"ZooMerge_{combination_type}", (ZooMerge,), {"combination_type": combination_type})
    return register(
        name,
        f"peft's {label} merge (add_weighted_adapter, combination_type={combination_type!r}) of the "
        "per-task adapters; optionally fine-tuned after",
        ZooMergeConfig,
        family="adapter zoo",
        state_types=(torch.Tensor,),
        test_time_fields=ZOO_MERGE_TEST_TIME,
        budget_field="task_steps",
        resumable_mid_run=False,
    )(cls)


MergeLinear = _register("linear", "linear")
MergeTies = _register("ties", "TIES")
MergeDareTies = _register("dare_ties", "DARE-TIES")
MergeSvd = _register("svd", "SVD")
