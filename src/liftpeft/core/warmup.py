"""Warm-up of LiFT's meta-training: noise-free optimisation of the joint posterior before sampling.

The paper's warm-up is plain optimisation of ``theta_i`` and ``phi``. Done in the centred coordinates
of the sampler (``theta_i`` given ``phi``, then ``phi`` given the thetas) it is slow: ``phi`` can only
follow the mean of the thetas, and each ``theta_i`` is held within ``~beta`` of ``phi``, so the shared
part moves by about ``beta^2 * grad`` per sweep over the tasks (measured: on a tiny cross-encoder
family, 1 000 such steps left the training loss at ln 2 while 200 Adam steps on one task fitted it).

``HierarchicalWarmup`` optimises the same objective in the non-centred coordinates
``theta_i = phi + delta_i``:

    maximise  log N(phi; c, sigma^2) + sum_i log N(delta_i; 0, beta^2) + sum_i log p(D_i | phi + delta_i)

with Adam, one (or a few) tasks per step: ``delta_i`` gets ``-delta_i/beta^2 + g_i`` and ``phi`` gets
``-(phi - c)/sigma^2 + (N/B) sum_{visited} g_i`` (an unbiased estimate of the sum over tasks), where
``g_i = d/dtheta log p(D_i | theta_i)``. The shared part then moves on every step, as in training one
adapter on the union of the tasks, while the task offsets stay under their prior.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from liftpeft.core.gibbs import NonFiniteError
from liftpeft.core.kmeans import kmeans, spherical_kmeans
from liftpeft.core.prior import HierarchicalPrior


def adam_direction(
    grad: torch.Tensor,
    m: torch.Tensor,
    v: torch.Tensor,
    count: torch.Tensor | int,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Adam's bias-corrected ascent direction ``m_hat / (sqrt(v_hat) + eps)``; returns ``(dir, m, v)``.

    ``count`` is the number of updates including this one (an int, or a tensor broadcastable to ``grad``).
    """
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad.square()
    c1 = 1 - torch.as_tensor(b1, dtype=grad.dtype) ** count
    c2 = 1 - torch.as_tensor(b2, dtype=grad.dtype) ** count
    return (m / c1) / ((v / c2).sqrt() + eps), m, v


def _step_offsets(
    warmup: Any,
    idx: torch.Tensor,
    rows: torch.Tensor,
    single: bool,
    grad_fn: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """The likelihood gradient at ``rows`` (checked finite) and one Adam step of the visited tasks'
    offsets ``delta_i`` on their prior and their own likelihood; returns the gradient."""
    grad = grad_fn(rows[0].clone() if single else rows.clone()).reshape(rows.shape).to(rows)
    if not torch.isfinite(grad).all():
        raise NonFiniteError(
            f"non-finite likelihood gradient for task(s) {idx.tolist()} at warm-up step {warmup.step_count}"
        )
    g_delta = -warmup.delta[idx] / warmup.prior.beta**2 + grad
    count = warmup._delta_count[idx] + 1
    direction, m, v = adam_direction(g_delta, warmup._delta_m[idx], warmup._delta_v[idx], count)
    warmup._delta_m[idx], warmup._delta_v[idx], warmup._delta_count[idx] = m, v, count
    warmup.delta[idx] = warmup.delta[idx] + warmup.lr * direction
    return grad


class HierarchicalWarmup:
    """Adam on ``(phi, delta_1..N)`` of the hierarchical posterior (non-centred coordinates).

    Same calling convention as ``SGLDGibbs``: ``step(task_index, grad_fn)`` with ``grad_fn(theta_rows)``
    returning ``d/dtheta log p(D_i | theta_i)``; ``.phi`` (d,), ``.theta`` (n_tasks, d).
    """

    def __init__(
        self,
        prior: HierarchicalPrior,
        n_tasks: int,
        dim: int,
        lr: float,
        init: torch.Tensor | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.prior = prior
        self.n_tasks, self.dim, self.lr = int(n_tasks), int(dim), float(lr)
        start = prior.center if init is None else init
        start = torch.zeros(dim) if start is None else start
        self.phi = start.to(dtype).clone()
        self.delta = torch.zeros(self.n_tasks, self.dim, dtype=dtype)
        self._phi_m, self._phi_v = torch.zeros_like(self.phi), torch.zeros_like(self.phi)
        self._delta_m, self._delta_v = torch.zeros_like(self.delta), torch.zeros_like(self.delta)
        self._phi_count = 0
        self._delta_count = torch.zeros(self.n_tasks, 1, dtype=torch.long)
        self.step_count = 0

    @property
    def theta(self) -> torch.Tensor:
        return self.phi + self.delta

    def step(self, task_index: int | torch.Tensor, grad_fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        idx = torch.as_tensor(task_index, dtype=torch.long).reshape(-1)
        single = not isinstance(task_index, torch.Tensor) or task_index.dim() == 0
        rows = self.phi + self.delta[idx]  # (B, d)
        grad = _step_offsets(self, idx, rows, single, grad_fn)
        # phi: its prior and an unbiased estimate of the summed likelihood gradient
        g_phi = self.prior.grad_log_prob_phi(self.phi) + (self.n_tasks / len(idx)) * grad.sum(0)
        self._phi_count += 1
        direction, self._phi_m, self._phi_v = adam_direction(g_phi, self._phi_m, self._phi_v, self._phi_count)
        self.phi = self.phi + self.lr * direction
        self.step_count += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "phi": self.phi.clone(),
            "delta": self.delta.clone(),
            "phi_m": self._phi_m.clone(),
            "phi_v": self._phi_v.clone(),
            "delta_m": self._delta_m.clone(),
            "delta_v": self._delta_v.clone(),
            "phi_count": self._phi_count,
            "delta_count": self._delta_count.clone(),
            "step_count": self.step_count,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.phi, self.delta = state["phi"].clone(), state["delta"].clone()
        self._phi_m, self._phi_v = state["phi_m"].clone(), state["phi_v"].clone()
        self._delta_m, self._delta_v = state["delta_m"].clone(), state["delta_v"].clone()
        self._phi_count = int(state["phi_count"])
        self._delta_count = state["delta_count"].clone()
        self.step_count = int(state["step_count"])


INIT_PARTITIONS = ("offsets", "gradients", "random")


class ClusteredWarmup:
    """The warm-up of the structured prior with ``K`` task clusters: Adam on ``(phi_1..K, delta_1..N)``
    with ``theta_i = phi_{z_i} + delta_i`` and hard assignments ``z_i`` (noise-free, fixed spread).

    ``phi_k`` gets ``-(phi_k - c)/sigma^2 + (N/B) sum_{visited i in k} g_i``, ``delta_i`` the same as in
    ``HierarchicalWarmup``. Symmetry breaking, ``init_partition``:

    * ``"offsets"``: for the first ``assign_after`` steps every task shares centre 0 (the plain
      warm-up); then ``seed_clusters()`` partitions the tasks by k-means of their offsets
      ``delta_i`` (tasks whose adapters left the shared centre the same way start together), puts
      each centre at its cluster's mean adapter and keeps every ``theta_i`` where it was.
    * ``"gradients"``: the same, but k-means (spherical) of the tasks' likelihood gradients at their
      adapters (``seed_clusters(grads)``), every centre starting from the shared one.
    * ``"random"``: a fixed random balanced partition from the start, like k-means' random-partition
      start.

    After ``assign_after`` steps a visited task moves to the centre under which its offset fits its
    data best, ``argmin_k L_i(phi_k + delta_i)`` on a minibatch (``loss_fn``; K forward passes), its
    offset carried along (``reassign=False`` keeps the first partition for the whole warm-up: with
    few examples per task every centre plus its offset fits a task's data, the loss does not tell
    the centres apart and larger clusters absorb the rest). Centres follow their tasks as fast as one
    adapter trained on the union of a cluster would, which the per-task chain alone cannot.
    """

    def __init__(
        self,
        prior: HierarchicalPrior,
        n_tasks: int,
        dim: int,
        lr: float,
        clusters: int,
        generator: torch.Generator,
        init: torch.Tensor | None = None,
        assign_after: int = 0,
        dtype: torch.dtype = torch.float32,
        init_partition: str = "random",
        reassign: bool = True,
    ) -> None:
        if not lr > 0 or clusters < 1 or n_tasks < clusters:
            raise ValueError(f"need lr > 0 and 1 <= clusters <= n_tasks, got lr={lr}, clusters={clusters}")
        self.prior, self.n_tasks, self.dim, self.lr = prior, int(n_tasks), int(dim), float(lr)
        self.clusters, self.assign_after = int(clusters), int(assign_after)
        start = prior.center if init is None else init
        start = torch.zeros(dim) if start is None else start
        self.phis = start.to(dtype).expand(self.clusters, dim).clone()
        self.delta = torch.zeros(self.n_tasks, self.dim, dtype=dtype)
        if init_partition not in INIT_PARTITIONS:
            raise ValueError(f"init_partition must be one of {INIT_PARTITIONS}, got {init_partition!r}")
        self.init_partition, self.reassign = init_partition, bool(reassign)
        self.generator = generator
        if init_partition == "random":  # a fixed random balanced partition from the start
            self.z = torch.randperm(self.n_tasks, generator=generator) % self.clusters
        else:
            self.z = torch.zeros(self.n_tasks, dtype=torch.long)
        self._phi_m, self._phi_v = torch.zeros_like(self.phis), torch.zeros_like(self.phis)
        self._delta_m, self._delta_v = torch.zeros_like(self.delta), torch.zeros_like(self.delta)
        self._phi_count = torch.zeros(self.clusters, 1, dtype=torch.long)
        self._delta_count = torch.zeros(self.n_tasks, 1, dtype=torch.long)
        self.step_count = 0

    @property
    def theta(self) -> torch.Tensor:
        return self.phis[self.z] + self.delta

    @property
    def needs_seeding(self) -> bool:
        """True at the step where ``seed_clusters`` must be called (before that step)."""
        return self.init_partition != "random" and self.clusters > 1 and self.step_count == self.assign_after

    @property
    def needs_gradients(self) -> bool:
        """True if ``seed_clusters`` needs the tasks' likelihood gradients (``init_partition="gradients"``)."""
        return self.init_partition == "gradients"

    def seed_clusters(self, grads: torch.Tensor | None = None) -> None:
        """Partition the tasks and start the centres from the shared one.

        ``"gradients"``: spherical k-means of ``grads`` (N, d), each task's likelihood gradient at its
        current adapter. ``"offsets"`` (``grads`` unused): k-means of the offsets ``delta_i``; centre
        ``k`` moves to the mean adapter of its tasks and the offsets are re-expressed around it, so no
        ``theta_i`` changes."""
        for name in ("phis", "_phi_m", "_phi_v", "_phi_count"):
            value = getattr(self, name)
            value[:] = value[0].clone()
        if self.init_partition == "offsets":
            self.z, centroids = kmeans(self.delta, self.clusters, n_init=8, generator=self.generator)
            centroids = centroids.to(self.delta)
            self.phis += centroids
            self.delta -= centroids[self.z]
            return
        if grads is None or grads.shape != (self.n_tasks, self.dim):
            shape = None if grads is None else tuple(grads.shape)
            raise ValueError(f"grads must be ({self.n_tasks}, {self.dim}), got {shape}")
        self.z, _ = spherical_kmeans(grads, self.clusters, n_init=8, generator=self.generator)

    @property
    def phi(self) -> torch.Tensor:
        """Size-weighted mean of the centres (logs and traces)."""
        sizes = torch.bincount(self.z, minlength=self.clusters).to(self.phis)
        return (sizes / sizes.sum()) @ self.phis

    def step(
        self,
        task_index: int | torch.Tensor,
        grad_fn: Callable[[torch.Tensor], torch.Tensor],
        loss_fn: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        """``loss_fn(i, rows)``: task ``i``'s minibatch loss at each row ``(K, d)`` (for the assignment)."""
        idx = torch.as_tensor(task_index, dtype=torch.long).reshape(-1)
        if (
            self.reassign
            and loss_fn is not None
            and self.clusters > 1
            and self.step_count > self.assign_after
        ):
            for i in idx.tolist():
                self.z[i] = int(torch.as_tensor(loss_fn(i, self.phis + self.delta[i])).argmin())
        single = not isinstance(task_index, torch.Tensor) or task_index.dim() == 0
        rows = self.phis[self.z[idx]] + self.delta[idx]
        grad = _step_offsets(self, idx, rows, single, grad_fn)
        # each visited task's cluster centre: its prior and the unbiased estimate of its members' sum
        for k in self.z[idx].unique().tolist():
            members = self.z[idx] == k
            g_phi = self.prior.grad_log_prob_phi(self.phis[k]) + (self.n_tasks / len(idx)) * grad[
                members
            ].sum(0)
            self._phi_count[k] += 1
            direction, self._phi_m[k], self._phi_v[k] = adam_direction(
                g_phi, self._phi_m[k], self._phi_v[k], int(self._phi_count[k])
            )
            self.phis[k] = self.phis[k] + self.lr * direction
        self.step_count += 1

    _STATE = ("phis", "delta", "z", "_phi_m", "_phi_v", "_delta_m", "_delta_v", "_phi_count", "_delta_count")

    def state_dict(self) -> dict[str, Any]:
        return {
            "step_count": self.step_count,
            **{n.lstrip("_"): getattr(self, n).clone() for n in self._STATE},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        for name in self._STATE:
            setattr(self, name, state[name.lstrip("_")].clone())
