"""k-means++ seeding, Lloyd iterations and spherical (cosine) k-means in plain torch.

Used to initialise the online mixture (Euclidean) and to cluster adapters by cosine similarity (MBC).

Shapes: ``x`` is ``(n, d)``; centers ``(K, d)``; labels ``(n,)``. Distances are computed in float64.
"""

from __future__ import annotations

import torch


def squared_distances(x: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """``||x_n - c_k||^2``, shape ``(n, K)``, float64, clamped at 0."""
    x64, c64 = x.to(torch.float64), centers.to(torch.float64)
    sq = x64.square().sum(1, keepdim=True) - 2.0 * x64 @ c64.T + c64.square().sum(1)
    return sq.clamp_min_(0.0)


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Seed ``k`` centers: the first uniformly, each next with probability proportional to ``D^2``."""
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=generator).item())
    chosen = [first]
    closest = squared_distances(x, x[first : first + 1]).squeeze(1)  # (n,)
    for _ in range(1, k):
        total = closest.sum()
        if total <= 0:  # every point coincides with a center: pick uniformly among the rest
            probs = torch.ones(n, dtype=torch.float64)
            probs[chosen] = 0
        else:
            probs = closest / total
        nxt = int(torch.multinomial(probs, 1, generator=generator).item())
        chosen.append(nxt)
        closest = torch.minimum(closest, squared_distances(x, x[nxt : nxt + 1]).squeeze(1))
    return x[chosen].to(torch.float64).clone()


def lloyd(
    x: torch.Tensor, centers: torch.Tensor, max_iter: int = 100
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Lloyd's iterations from ``centers``; returns ``(labels, centers, inertia)``.

    An emptied cluster is re-seeded at the point farthest from its center.
    """
    x64 = x.to(torch.float64)
    centers = centers.clone()
    labels = torch.full((x.shape[0],), -1, dtype=torch.long)
    for _ in range(max_iter):
        dist = squared_distances(x64, centers)
        new_labels = dist.argmin(1)
        for j in range(centers.shape[0]):
            members = new_labels == j
            if not members.any():
                far = int(dist.min(1).values.argmax().item())
                new_labels[far] = j
                members = new_labels == j
            centers[j] = x64[members].mean(0)
        if torch.equal(new_labels, labels):
            break
        labels = new_labels
    inertia = float(squared_distances(x64, centers).gather(1, labels[:, None]).sum())
    return labels, centers, inertia


def kmeans(
    x: torch.Tensor, k: int, n_init: int, generator: torch.Generator, max_iter: int = 100
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best of ``n_init`` k-means++ restarts by inertia; returns ``(labels (n,), centers (k, d))``."""
    if x.shape[0] < k:
        raise ValueError(f"k-means needs at least k={k} points, got {x.shape[0]}")
    best: tuple[float, torch.Tensor, torch.Tensor] | None = None
    for _ in range(max(1, n_init)):
        labels, centers, inertia = lloyd(x, kmeans_plus_plus(x, k, generator), max_iter)
        if best is None or inertia < best[0]:
            best = (inertia, labels, centers)
    assert best is not None
    return best[1], best[2]


def spherical_kmeans(
    x: torch.Tensor, k: int, n_init: int, generator: torch.Generator, max_iter: int = 100
) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means under cosine similarity: rows and centers live on the unit sphere.

    Rows are L2-normalised; seeding is k-means++ on them (squared distance between unit vectors is
    ``2 - 2 cos``); each iteration assigns a row to the center of highest cosine and re-centres a
    cluster at its normalised mean. An emptied cluster is re-seeded at the row least similar to its
    center. The best of ``n_init`` restarts by total cosine similarity wins.
    Returns ``(labels (n,), centers (k, d))`` with unit-norm float64 centers.
    """
    if x.shape[0] < k:
        raise ValueError(f"k-means needs at least k={k} points, got {x.shape[0]}")
    unit = torch.nn.functional.normalize(x.to(torch.float64), dim=1)  # (n, d)
    best: tuple[float, torch.Tensor, torch.Tensor] | None = None
    for _ in range(max(1, n_init)):
        centers = kmeans_plus_plus(unit, k, generator)
        labels = torch.full((unit.shape[0],), -1, dtype=torch.long)
        for _ in range(max_iter):
            sim = unit @ centers.T  # (n, k)
            new_labels = sim.argmax(1)
            for j in range(k):
                if not (new_labels == j).any():
                    new_labels[int(sim.max(1).values.argmin())] = j
                centers[j] = torch.nn.functional.normalize(unit[new_labels == j].sum(0), dim=0)
            if torch.equal(new_labels, labels):
                break
            labels = new_labels
        score = float((unit * centers[labels]).sum())
        if best is None or score > best[0]:
            best = (score, labels, centers)
    assert best is not None
    return best[1], best[2]
