"""Multi-LoRA (seed document 003): parallel fine-tuning of many tasks with one shared LoRA A.

Every LoRA-adapted weight gets ``W + B_i A``: ``A`` (r x in) is shared by all tasks and, by
default, frozen at its random PEFT initialisation; ``B_i`` (out x r) belongs to task ``i``. In flat
terms the adapter ``theta`` splits into a shared part (every ``lora_A`` tensor) and a task part
(every ``lora_B`` tensor plus any other trainable tensor, such as a cross-encoder's scoring head,
which is task specific too); ``LoraParts`` holds the two index sets, read from the backbone's
``FlatSpec`` names, so any peft LoRA target works.

For ``k`` tasks Multi-LoRA stores ``d_A + k d_B`` adapter parameters (trains ``k d_B``, plus ``d_A``
with ``train_shared_a``) where one LoRA per task stores ``k (d_A + d_B)``: the ``O(dr + kmr)`` versus
``O(k(d + m)r)`` of the paper (``multilora_parameter_counts``).

* ``multilora``: meta-training trains all tasks' B (and the shared A if asked) in parallel on the sum
  of the task losses (each step a minibatch of every task, or of ``tasks_per_step`` random tasks),
  optionally under autocast (``mixed_precision="bf16"``); a new task trains its own B with the
  shared A.
* ``lift-multilora``: LiFT's hierarchical prior over the B part only, A shared and fixed at the PEFT
  initialisation: LiFT runs unchanged on ``SubspaceObjective`` s that map a B vector to the full
  adapter. Its prior lives in the B subspace, so it is a method state, not a ``liftpeft adapt`` prior.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from liftpeft.core.flat import FlatSpec
from liftpeft.learned_prior import LearnedPrior
from liftpeft.methods.base import DEFAULT_COSTS, CostSpec, MetaProblem, register
from liftpeft.methods.finetune import FINETUNE_TEST_TIME, FinetuneConfig, finetune_with
from liftpeft.methods.lift import LiftConfig, LiftTrainer, adapt_to_task
from liftpeft.methods.lift.config import LIFT_TEST_TIME
from liftpeft.objective import SubspaceObjective, TaskObjective, sample_batch
from liftpeft.progress import progress_bar

SHARED_MARKERS = (".lora_A.", ".lora_embedding_A.")
LORA_B_MARKERS = (".lora_B.", ".lora_embedding_B.")
MIXED_PRECISION = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class LoraParts:
    """Index sets of a flat LoRA adapter: ``shared`` (every A, ``(d_A,)``) and ``task`` (the rest, ``(d_B,)``)."""

    shared: torch.Tensor
    task: torch.Tensor

    @classmethod
    def from_spec(cls, spec: FlatSpec) -> LoraParts:
        names = [f".{n}." for n in spec.names]
        is_a = [any(m in n for m in SHARED_MARKERS) for n in names]
        if not any(is_a) or not any(any(m in n for m in LORA_B_MARKERS) for n in names):
            raise ValueError(
                "Multi-LoRA needs a LoRA adapter (tensors named lora_A / lora_B); this adapter has "
                f"{', '.join(spec.names[:3])}{'...' if len(spec.names) > 3 else ''}"
            )
        shared, task = [], []
        for flag, (start, stop) in zip(is_a, spec.offsets().values()):
            (shared if flag else task).append(torch.arange(start, stop))
        return cls(torch.cat(shared), torch.cat(task))

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> LoraParts:
        if "spec" not in description:
            raise ValueError(
                "Multi-LoRA needs the adapter layout: MetaProblem.description['spec'] "
                "(PeftBackbone.describe() provides it)"
            )
        return cls.from_spec(FlatSpec.from_dict(description["spec"]))

    @property
    def d_shared(self) -> int:
        return self.shared.numel()

    @property
    def d_task(self) -> int:
        return self.task.numel()

    def compose(self, base: torch.Tensor, shared: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """``base`` ``(d,)`` with its shared part replaced by ``shared`` and task part by ``task`` (differentiable)."""
        return (
            base.to(task.dtype)
            .index_copy(0, self.shared, shared.to(task.dtype))
            .index_copy(0, self.task, task)
        )


@dataclass(frozen=True)
class ParameterCounts:
    """Adapter parameters for ``n_tasks`` tasks: Multi-LoRA versus one LoRA per task."""

    n_tasks: int
    d_shared: int  # d_A: every LoRA A
    d_task: int  # d_B: every LoRA B (and any trainable head)
    multilora_total: int  # d_A + k d_B
    multilora_trainable: int  # k d_B (+ d_A when A is trained)
    lora_per_task: int  # k (d_A + d_B)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def multilora_parameter_counts(
    parts: LoraParts | FlatSpec, n_tasks: int, train_shared_a: bool = False
) -> ParameterCounts:
    """Stored and trainable adapter parameters of Multi-LoRA and of one LoRA per task, for ``n_tasks``."""
    parts = LoraParts.from_spec(parts) if isinstance(parts, FlatSpec) else parts
    d_a, d_b, k = parts.d_shared, parts.d_task, int(n_tasks)
    return ParameterCounts(
        n_tasks=k,
        d_shared=d_a,
        d_task=d_b,
        multilora_total=d_a + k * d_b,
        multilora_trainable=k * d_b + (d_a if train_shared_a else 0),
        lora_per_task=k * (d_a + d_b),
    )


@dataclass
class MultiLoraConfig(FinetuneConfig):
    meta_steps: int = field(
        default=300, metadata={"help": "parallel steps (each: a minibatch of every task)"}
    )
    meta_lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate of parallel training"})
    meta_batch_size: int = field(default=16, metadata={"help": "examples per task per step"})
    tasks_per_step: int | None = field(
        default=None, metadata={"help": "tasks updated per step (None: all, the paper's parallel training)"}
    )
    train_shared_a: bool = field(default=False, metadata={"help": "train the shared A too (default frozen)"})
    mixed_precision: str | None = field(
        default=None, metadata={"help": "autocast dtype of parallel training: None | bf16 | fp16"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.meta_steps < 0 or self.meta_lr <= 0 or self.meta_batch_size < 1:
            raise ValueError("meta_steps >= 0, meta_lr > 0 and meta_batch_size >= 1 are required")
        if self.tasks_per_step is not None and self.tasks_per_step < 1:
            raise ValueError(f"tasks_per_step must be None or >= 1, got {self.tasks_per_step}")
        if self.mixed_precision not in (None, *MIXED_PRECISION):
            raise ValueError(f"mixed_precision must be None, 'bf16' or 'fp16', got {self.mixed_precision!r}")


@dataclass
class MultiLoraState:
    """The shared A ``(d_A,)``, every training task's B part ``(N, d_B)``, and how they compose."""

    shared: torch.Tensor
    task_parts: torch.Tensor
    parts: LoraParts
    theta0: torch.Tensor
    task_names: list[str]

    def adapter(self, i: int) -> torch.Tensor:
        """The full adapter ``(d,)`` of training task ``i``."""
        return self.parts.compose(self.theta0, self.shared, self.task_parts[i])


def _autocast(dtype_name: str | None, device: torch.device):
    if dtype_name is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=MIXED_PRECISION[dtype_name])


def train_multilora(
    tasks: Sequence[TaskObjective], theta0: torch.Tensor, parts: LoraParts, config: MultiLoraConfig, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Parallel training of every task's B (and the shared A if configured); returns ``(A (d_A,), B (N, d_B))``.

    The objective is ``sum_i L_i(A, B_i)``; each task's loss is back-propagated on its own (the
    gradients accumulate), so memory is that of one task.
    """
    shared = theta0[parts.shared].detach().clone().requires_grad_(config.train_shared_a)
    task_parts = theta0[parts.task].detach().repeat(len(tasks), 1).requires_grad_(True)  # (N, d_B)
    optimizer = torch.optim.AdamW(
        [task_parts, shared] if config.train_shared_a else [task_parts], lr=config.meta_lr, weight_decay=0.0
    )
    generator = torch.Generator().manual_seed(seed)
    sizes = [t.n_examples("train") for t in tasks]
    per_step = len(tasks) if config.tasks_per_step is None else min(config.tasks_per_step, len(tasks))
    for _ in progress_bar(range(config.meta_steps), desc="Multi-LoRA parallel training", unit="step"):
        chosen = torch.randperm(len(tasks), generator=generator)[:per_step].tolist()
        optimizer.zero_grad(set_to_none=True)
        for i in chosen:
            idx = sample_batch(sizes[i], config.meta_batch_size, generator)
            with _autocast(config.mixed_precision, theta0.device):
                loss = tasks[i].loss(parts.compose(theta0, shared, task_parts[i]), idx)
            loss.float().backward()
        optimizer.step()
    return shared.detach(), task_parts.detach()


@register(
    "multilora",
    "Multi-LoRA: one LoRA A shared by all tasks (frozen by default), one B per task, trained in parallel",
    MultiLoraConfig,
    family="multi-task",
    state_types=(MultiLoraState, LoraParts),
    test_time_fields=FINETUNE_TEST_TIME,
    budget_field="meta_steps",
    resumable_mid_run=False,
    # a step without tasks_per_step takes a minibatch of every training task
    cost=CostSpec(
        "outer update", DEFAULT_COSTS["meta_steps"].uniform, per_task=lambda c: c.tasks_per_step is None
    ),
)
class MultiLora:
    name = "multilora"

    def __init__(self, config: MultiLoraConfig | None = None) -> None:
        self.config = config or MultiLoraConfig()

    def meta_train(self, problem: MetaProblem, seed: int) -> MultiLoraState:
        parts = LoraParts.from_description(problem.description)
        shared, task_parts = train_multilora(problem.train, problem.theta0, parts, self.config, seed)
        return MultiLoraState(
            shared, task_parts, parts, problem.theta0.clone(), [t.name for t in problem.train]
        )

    def adapt(self, state: MultiLoraState, task: TaskObjective, seed: int) -> torch.Tensor:
        """Train the new task's own B (from the PEFT initialisation) with the shared A fixed."""
        parts = state.parts
        base = parts.compose(state.theta0, state.shared, state.theta0[parts.task])
        sub = SubspaceObjective(task, base, parts.task)
        return sub.full(finetune_with(self.config, sub, base[parts.task], seed))


@dataclass
class LiftMultiLoraState:
    """LiFT's prior over the B part ``(d_B,)``, the base adapter holding the fixed A, and the index sets."""

    prior: LearnedPrior
    base: torch.Tensor
    parts: LoraParts


@register(
    "lift-multilora",
    "LiFT's hierarchical prior over Multi-LoRA's per-task B matrices only, A shared and fixed at its init",
    LiftConfig,
    family="LiFT variant",
    state_types=(LiftMultiLoraState, LearnedPrior, LoraParts),
    test_time_fields=LIFT_TEST_TIME,
    budget_field="steps",
    resumable_mid_run=False,
)
class LiftMultiLora:
    name = "lift-multilora"

    def __init__(self, config: LiftConfig | None = None) -> None:
        self.config = config or LiftConfig()

    def meta_train(self, problem: MetaProblem, seed: int) -> LiftMultiLoraState:
        parts = LoraParts.from_description(problem.description)
        subs = [SubspaceObjective(t, problem.theta0, parts.task) for t in problem.train]
        description = {**problem.description, "subspace": "task part of Multi-LoRA (LoRA B and heads)"}
        sub_problem = MetaProblem(subs, problem.theta0[parts.task], description=description)
        prior = LiftTrainer(sub_problem, self.config, seed=seed).run()
        return LiftMultiLoraState(prior, problem.theta0.clone(), parts)

    def adapt(self, state: LiftMultiLoraState, task: TaskObjective, seed: int) -> torch.Tensor:
        sub = SubspaceObjective(task, state.base, state.parts.task)
        return sub.full(adapt_to_task(state.prior, sub, self.config, seed=seed).samples)
