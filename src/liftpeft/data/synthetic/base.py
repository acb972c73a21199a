"""Shared pieces of the tensor-valued synthetic families: the benchmark container, splits, seeding.

A family builds ``train`` / ``dev`` / ``test`` lists of tasks (meta-training, meta-dev and meta-test
tasks), each a ``TaskObjective`` over plain tensors, plus ``theta0`` (the initialisation that plays
the part of the PEFT initialisation), so that a ``MetaProblem`` can be built without any
``transformers`` model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import torch

from liftpeft.objective import TaskObjective
from liftpeft.problem import MetaProblem
from liftpeft.tasks.schema import SPLITS


def task_generator(seed: int, *keys: object) -> torch.Generator:
    """A ``torch.Generator`` seeded from ``(seed, *keys)`` by a stable hash.

    Every task draws from its own generator keyed by (family seed, role, index), so a task does not
    change when more tasks are requested, and nothing depends on torch's global RNG.
    """
    digest = hashlib.sha256(repr((int(seed), *keys)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


@dataclass
class SyntheticBenchmark:
    """A synthetic task family: meta-train / meta-dev / meta-test tasks and the shared initialisation.

    ``train``, ``dev``, ``test``: lists of ``TaskObjective`` (tasks, each with its own train / dev /
    test example splits); ``theta0``: ``(d,)``, the initialisation and center of LiFT's prior;
    ``config``: the family's resolved settings (saved with every artefact as the description).
    """

    name: str
    train: list[TaskObjective]
    dev: list[TaskObjective]
    test: list[TaskObjective]
    theta0: torch.Tensor
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return self.theta0.shape[0]

    def meta_problem(self) -> MetaProblem:
        """The ``MetaProblem`` every method meta-trains on (training tasks, ``theta0``, meta-dev tasks)."""
        description = {"benchmark": self.name, "dim": self.dim, **self.config}
        return MetaProblem(list(self.train), self.theta0.clone(), list(self.dev), description)


class TensorTask:
    """Base of the synthetic tasks: named splits of ``(inputs, targets)`` tensors, ``n`` rows each.

    ``inputs`` may be ``None`` (the conjugate family observes its parameter directly). Subclasses
    define ``per_example_loss(theta (d,), x, y) -> (B,)`` and ``evaluate``.
    """

    name: str
    primary_metric: str
    higher_is_better: bool

    def __init__(self, name: str, splits: dict[str, tuple[torch.Tensor | None, torch.Tensor]]) -> None:
        unknown = sorted(set(splits) - set(SPLITS))
        if unknown:
            raise ValueError(f"unknown split(s) {unknown}; splits are {SPLITS}")
        if not splits.get("train") or len(splits["train"][1]) == 0:
            raise ValueError(f"task {name!r} needs at least one training example")
        for split, (x, y) in splits.items():
            if x is not None and len(x) != len(y):
                raise ValueError(f"{split}: {len(x)} inputs but {len(y)} targets")
        self.name = name
        self.splits = splits

    def n_examples(self, split: str = "train") -> int:
        self._check_split(split)
        return len(self.splits[split][1]) if split in self.splits else 0

    def _check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; splits are {SPLITS}")

    def batch(self, split: str, idx: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``(inputs, targets)`` of examples ``idx`` of ``split`` (all of them if ``idx`` is None)."""
        self._check_split(split)
        if split not in self.splits or len(self.splits[split][1]) == 0:
            raise ValueError(f"task {self.name!r} has no {split} examples")
        x, y = self.splits[split]
        if idx is None:
            return x, y
        return (None if x is None else x[idx]), y[idx]

    def per_example_loss(self, theta: torch.Tensor, x: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(
        self, theta: torch.Tensor, idx: torch.Tensor | None = None, split: str = "train"
    ) -> torch.Tensor:
        """Mean per-example loss at ``theta`` (d,) over examples ``idx`` of ``split``; differentiable."""
        if theta.dim() != 1:
            raise ValueError(f"loss takes one flat theta (d,), got shape {tuple(theta.shape)}")
        x, y = self.batch(split, idx)
        return self.per_example_loss(theta, x, y).mean()

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={self.n_examples(s)}" for s in SPLITS)
        return f"{type(self).__name__}({self.name!r}, {sizes})"


def as_rows(thetas: torch.Tensor, dim: int) -> torch.Tensor:
    """``thetas`` (d,) or (M, d) as ``(M, d)``; checks the dimension."""
    rows = thetas[None] if thetas.dim() == 1 else thetas
    if rows.dim() != 2 or rows.shape[1] != dim:
        raise ValueError(f"expected thetas of shape (d,) or (M, d) with d={dim}, got {tuple(thetas.shape)}")
    return rows
