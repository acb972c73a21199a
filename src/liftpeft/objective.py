"""The one interface every method sees: a task as a loss of a flat parameter vector.

Methods (LiFT and every baseline) never know which backbone they run on. A ``TaskObjective`` gives
the mean per-example loss ``L(theta)`` of a task on a minibatch of example indices, the size of each
split, and metrics of an adapted ``theta`` (or of the averaged predictive of several samples).
``peft_integration.PeftTaskObjective`` implements it for ``transformers`` models; the synthetic
benchmarks implement it on plain tensors.
"""

from __future__ import annotations

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
