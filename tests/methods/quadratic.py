"""A pure-torch ``TaskObjective`` with closed-form everything, for the methods' reference tests.

A task's per-example loss is ``1/2 (theta - a_j)^T A (theta - a_j)``, so on a batch ``B``

    L_B(theta) = 1/2 (theta - abar_B)^T A (theta - abar_B) + const,   grad = A (theta - abar_B),   H = A

with ``abar_B`` the mean of the batch's centers: SGD steps, proximal solutions and meta-gradients
all have closed forms.
"""

from __future__ import annotations

import torch


class QuadraticTask:
    """One quadratic task; ``centers`` maps a split to its per-example centers ``a_j`` (n, d)."""

    primary_metric = "loss"
    higher_is_better = False

    def __init__(self, name: str, curvature: torch.Tensor, centers: dict[str, torch.Tensor]) -> None:
        self.name = name
        self.curvature = curvature  # A (d, d), symmetric positive definite
        self.centers = centers

    def n_examples(self, split: str = "train") -> int:
        return self.centers[split].shape[0]

    def batch_mean(self, idx: torch.Tensor | None = None, split: str = "train") -> torch.Tensor:
        centers = self.centers[split]
        return (centers if idx is None else centers[idx]).mean(0)

    def loss(
        self, theta: torch.Tensor, idx: torch.Tensor | None = None, split: str = "train"
    ) -> torch.Tensor:
        centers = self.centers[split] if idx is None else self.centers[split][idx]
        diff = theta - centers.to(theta)  # (B, d)
        return 0.5 * ((diff @ self.curvature.to(theta)) * diff).sum(1).mean()

    @torch.no_grad()
    def evaluate(self, thetas: torch.Tensor, split: str = "test") -> dict[str, float]:
        thetas = thetas[None] if thetas.dim() == 1 else thetas
        return {"loss": float(torch.stack([self.loss(t, None, split) for t in thetas]).mean())}


def random_spd(
    dim: int, generator: torch.Generator, low: float = 0.5, high: float = 2.0, dtype=torch.float64
):
    """``Q diag(eigenvalues in [low, high]) Q^T`` with a random rotation ``Q``."""
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=dtype))
    eig = torch.linspace(low, high, dim, dtype=dtype)
    return (q * eig) @ q.T


def quadratic_family(
    n_tasks: int,
    dim: int = 4,
    seed: int = 0,
    *,
    n_train: int = 8,
    n_test: int = 32,
    shift: float = 2.0,
    cluster_offset: float = 1.0,
    task_spread: float = 0.2,
    noise: float = 1.0,
    dtype: torch.dtype = torch.float32,
) -> list[QuadraticTask]:
    """Tasks sharing a curvature; task ``t``'s center is ``shift * 1 +/- cluster_offset * e_0`` (two
    clusters, alternating) plus ``N(0, task_spread^2)``; examples scatter ``N(0, noise^2)`` around it.

    Fine-tuning from ``theta0 = 0`` has far to go; a meta-learned start near ``shift * 1`` (or near a
    cluster) does not.
    """
    g = torch.Generator().manual_seed(seed)
    curvature = random_spd(dim, g).to(dtype)
    tasks = []
    for t in range(n_tasks):
        center = torch.full((dim,), shift, dtype=torch.float64)
        center[0] += cluster_offset if t % 2 == 0 else -cluster_offset
        center = center + task_spread * torch.randn(dim, generator=g, dtype=torch.float64)
        splits = {
            split: (center + noise * torch.randn(n, dim, generator=g, dtype=torch.float64)).to(dtype)
            for split, n in (("train", n_train), ("dev", 4), ("test", n_test))
        }
        tasks.append(QuadraticTask(f"quad-{seed}-{t:03d}", curvature, splits))
    return tasks
