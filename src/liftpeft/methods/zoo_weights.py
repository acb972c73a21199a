"""What the zoo baselines share: the support-set loss of a candidate adapter, without gradients."""

from __future__ import annotations

import torch

from liftpeft.objective import TaskObjective


@torch.no_grad()
def support_loss(task: TaskObjective, theta: torch.Tensor, batch_size: int) -> float:
    """Mean loss of ``theta`` over the whole train (support) split, in batches of ``batch_size``."""
    n = task.n_examples("train")
    total = 0.0
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(start + batch_size, n))
        total += float(task.loss(theta, idx, "train")) * len(idx)
    return total / n


def uniform_weights(n: int) -> list[float]:
    """``1 / n`` for each of ``n`` adapters (they sum to one)."""
    return [1.0 / n] * n
