"""The shared latents of a sharded run, held as sufficient statistics that the ranks add up.

Adapters are stored as offsets ``u_i = theta_i - c`` from the prior centre ``c``. Each latent offers:

``start(rows)``              the statistics of this rank's tasks at ``u = 0`` (before any step)
``set_stats(total)``         the all-reduced statistics; then ``draw(temp)`` draws the shared state
``theta_grad(row, u)``       ``d/dtheta log p(theta_i | shared)`` (d,) float32 for a local task
``visit(row, task, u_old, u_new, ...)``  the visited task's own draws; returns its final ``u`` and
                             its change of the statistics (a flat float64 vector of ``size``)
``update(total, temp, step)``  add the all-reduced change and redraw the shared state

Within a step every visited task sees the shared state of the step's start (the ranks visit theirs
at the same time). For the paper's model that is exact: the adapters are independent given ``phi``.
For the structured model's cluster assignments it is a parallel Gibbs step (as in AD-LDA): a task
does not see the reassignments made by the W - 1 other tasks of the same step, an O(W / N) effect
on the cluster counts; the one-process run with the same schedule makes the same draws.

Every shared draw comes from one generator seeded identically on every rank and consumed in the
same order, so the shared state is the same bits everywhere without being broadcast.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from liftpeft.core.draws import categorical, gamma, inverse_gamma
from liftpeft.core.prior import HierarchicalPrior
from liftpeft.core.sgld import PSGLDState, langevin_kernel
from liftpeft.core.structured import StructuredHierarchy
from liftpeft.scale import keys

LogLikFn = Callable[[int, torch.Tensor], torch.Tensor]
SHARDED_PHI_UPDATES = ("gibbs", "exact")


class PaperLatent:
    """The paper's model: one ``phi ~ N(c, sigma^2)``, ``theta_i ~ N(phi, beta^2)``; statistics
    ``S = sum_i u_i`` (d,). ``phi_update="gibbs"`` draws ``phi`` from its conditional, ``"exact"`` takes
    an SGLD step on it with the exact gradient ``-v/sigma^2 + (S - N v)/beta^2`` (``v = phi - c``)."""

    def __init__(
        self,
        prior: HierarchicalPrior,
        n_tasks: int,
        dim: int,
        seed: int,
        *,
        phi_update: str = "gibbs",
        phi_step_size: float = 1e-3,
        preconditioner: str | None = None,
        rmsprop_alpha: float = 0.99,
        rmsprop_eps: float = 1e-5,
    ) -> None:
        if phi_update not in SHARDED_PHI_UPDATES:
            raise ValueError(
                f"a sharded run updates phi with one of {SHARDED_PHI_UPDATES}, got {phi_update!r}; the "
                "'cavity' cache and the 'sample' ablation need every task's term on one process"
            )
        self.prior, self.n_tasks, self.dim = prior, int(n_tasks), int(dim)
        self.phi_update, self.phi_step_size = phi_update, float(phi_step_size)
        self.kernel = langevin_kernel(
            preconditioner if phi_update == "exact" else None, rmsprop_alpha, rmsprop_eps
        )
        self.preconditioned = preconditioner is not None and phi_update == "exact"
        self.generator = keys.generator(seed, keys.SHARED, 0)
        self.v = torch.zeros(dim, dtype=torch.float64)  # phi - c
        self.S = torch.zeros(dim, dtype=torch.float64)
        self.phi_sq = torch.zeros(dim) if self.preconditioned else None
        self.phi_visits = 0
        self._v32 = self.v.float()

    size = property(lambda self: self.dim)

    def start(self, rows: int) -> torch.Tensor:
        return torch.zeros(self.dim, dtype=torch.float64)

    def set_stats(self, total: torch.Tensor) -> None:
        self.S = total.clone()

    def draw(self, temp: float) -> None:
        """``phi`` from its Gaussian conditional (the start of the chain, whatever the update rule)."""
        precision = 1.0 / self.prior.sigma**2 + self.n_tasks / self.prior.beta**2
        mean = self.S / self.prior.beta**2 / precision
        if temp > 0:
            noise = torch.randn(self.dim, generator=self.generator, dtype=torch.float64)
            mean = mean + noise * math.sqrt(temp / precision)
        self._set_v(mean)

    def _set_v(self, v: torch.Tensor) -> None:
        self.v = v.to(torch.float64)
        self._v32 = self.v.float()

    def theta_grad(self, row: int, u: torch.Tensor) -> torch.Tensor:
        return (self._v32 - u) / self.prior.beta**2

    def visit(
        self,
        row: int,
        task: int,
        u_old: torch.Tensor,
        u_new: torch.Tensor,
        step: int,
        temp: float,
        log_lik_fn: LogLikFn | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return u_new, (u_new.double() - u_old.double())

    def update(self, total: torch.Tensor, temp: float, step: int) -> None:
        self.S += total
        if self.phi_update == "gibbs":
            self.draw(temp)
            return
        p = self.prior
        grad = (-self.v / p.sigma**2 + (self.S - self.n_tasks * self.v) / p.beta**2).float()
        state = PSGLDState(self.phi_sq, self.phi_visits) if self.preconditioned else None
        new, state = self.kernel.step(self.v.float(), grad, state, self.phi_step_size, self.generator, temp)
        if state is not None:
            self.phi_sq, self.phi_visits = state.square_avg, int(state.count)
        if not bool(torch.isfinite(new).all()):
            raise FloatingPointError(
                f"phi became non-finite at step {step}; lower phi_step_size or use 'gibbs'"
            )
        self._set_v(new)

    def phi_offset(self) -> torch.Tensor:
        return self.v

    def state_dict(self) -> dict[str, Any]:
        state = {"v": self.v.clone(), "S": self.S.clone(), "generator": self.generator.get_state().clone()}
        if self.preconditioned:
            state.update(phi_sq=self.phi_sq.clone(), phi_visits=self.phi_visits)  # type: ignore[union-attr]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._set_v(state["v"])
        self.S = state["S"].clone()
        self.generator.set_state(state["generator"].clone())
        if self.preconditioned:
            self.phi_sq, self.phi_visits = state["phi_sq"].clone(), int(state["phi_visits"])


class StructuredLatent:
    """The structured prior (``core.structured``): centres ``phi_k``, learned spread ``beta_m^2``,
    Student-t scales ``lambda_i``, assignments ``z_i``. Statistics per cluster: ``W_k = sum lambda_i``,
    ``S_k = sum lambda_i u_i`` and ``Q_k = sum lambda_i u_i^2`` (d each), the counts, and a flag per
    cluster touched in the step (only those centres are redrawn, as in ``StructuredGibbs``)."""

    def __init__(self, model: StructuredHierarchy, n_tasks: int, seed: int, spread_every: int = 10) -> None:
        if n_tasks < model.clusters:
            raise ValueError(f"{model.clusters} clusters need at least as many tasks, got {n_tasks}")
        self.model, self.n_tasks, self.seed = model, int(n_tasks), int(seed)
        self.K, self.dim = model.clusters, model.dim
        self.spread_every = int(spread_every)
        self.generator = keys.generator(seed, keys.SHARED, 0)
        K, d = self.K, self.dim
        self.phi_v = torch.zeros(K, d, dtype=torch.float64)
        self.W = torch.zeros(K, dtype=torch.float64)
        self.S = torch.zeros(K, d, dtype=torch.float64)
        self.Q = torch.zeros(K, d, dtype=torch.float64)
        self.counts = torch.zeros(K, dtype=torch.float64)
        self._set_spread(torch.full((model.n_blocks,), model.beta**2, dtype=torch.float64))
        self.proposed_moves = self.accepted_moves = 0

    @property
    def size(self) -> int:
        return self.K * (2 * self.dim + 3)

    # -- the flat statistics vector: [W (K), S (K d), Q (K d), counts (K), touched (K)] -------------
    def _pack(self, W, S, Q, counts, touched) -> torch.Tensor:
        return torch.cat([W, S.reshape(-1), Q.reshape(-1), counts, touched])

    def _unpack(self, flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        K, d = self.K, self.dim
        W, S, Q, counts, touched = flat.split([K, K * d, K * d, K, K])
        return W, S.view(K, d), Q.view(K, d), counts, touched

    def _contribution(self, lam: float, k: int, u: torch.Tensor, sign: float) -> torch.Tensor:
        flat = torch.zeros(self.size, dtype=torch.float64)
        W, S, Q, counts, touched = self._unpack(flat)
        u64 = u.double()
        W[k] = sign * lam
        S[k] = (sign * lam) * u64
        Q[k] = (sign * lam) * u64.square()
        counts[k] = sign
        touched[k] = 1.0
        return flat

    def start(self, tasks: list[int]) -> torch.Tensor:
        """Local state of this rank's ``tasks`` (global ids): ``lambda = 1``, ``z`` uniform at random."""
        n = len(tasks)
        self.lam = torch.ones(n, dtype=torch.float64)
        self.z = torch.tensor(
            [
                int(torch.randint(self.K, (1,), generator=keys.generator(self.seed, keys.LOCAL, -1, i)))
                for i in tasks
            ],
            dtype=torch.long,
        )
        onehot = torch.nn.functional.one_hot(self.z, self.K).double() if n else torch.zeros(0, self.K)
        self._reset_local_record(n)
        zeros = torch.zeros(self.K, self.dim, dtype=torch.float64)
        return self._pack(onehot.sum(0), zeros, zeros, onehot.sum(0), torch.ones(self.K, dtype=torch.float64))

    def set_stats(self, total: torch.Tensor) -> None:
        W, S, Q, counts, _ = self._unpack(total)
        self.W, self.S, self.Q, self.counts = W.clone(), S.clone(), Q.clone(), counts.clone()
        self._reset_shared_record()

    def draw(self, temp: float, clusters: list[int] | None = None) -> None:
        rows = list(range(self.K)) if clusters is None else clusters
        if not rows:
            return
        precision = 1.0 / self.model.sigma**2 + self.W[rows, None] * self._inv_var  # (k, d)
        mean = (self.S[rows] * self._inv_var) / precision
        if temp > 0:
            noise = torch.randn(mean.shape, generator=self.generator, dtype=torch.float64)
            mean = mean + noise * torch.sqrt(temp / precision)
        self.phi_v[rows] = mean
        self._phi32 = self.phi_v.float()

    def _set_spread(self, beta2: torch.Tensor) -> None:
        self.beta2 = beta2
        self._inv_var = 1.0 / beta2[self.model.block_index]
        self._inv_var32 = self._inv_var.float()

    def theta_grad(self, row: int, u: torch.Tensor) -> torch.Tensor:
        k = int(self.z[row])
        return (self._phi32[k] - u).mul_(float(self.lam[row])).mul_(self._inv_var32)

    def _sq_dist(self, u: torch.Tensor, k: torch.Tensor | int) -> torch.Tensor:
        return ((u.double() - self.phi_v[k]).square() * self._inv_var).sum(-1)

    def visit(
        self,
        row: int,
        task: int,
        u_old: torch.Tensor,
        u_new: torch.Tensor,
        step: int,
        temp: float,
        log_lik_fn: LogLikFn | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        m, K = self.model, self.K
        delta = self._contribution(float(self.lam[row]), int(self.z[row]), u_old, -1.0)
        if temp > 0:
            gen = keys.generator(self.seed, keys.LOCAL, step, task)
            counts = self.counts.clone()
            counts[int(self.z[row])] -= 1.0  # the task's own term leaves its cluster
            if m.dof is not None:
                r2 = float(self._sq_dist(u_new, int(self.z[row])))
                shape = torch.tensor([(m.dof + self.dim) / 2.0], dtype=torch.float64)
                self.lam[row] = float(gamma(shape, gen)[0]) / ((m.dof + r2) / 2.0)
            if K > 1:
                if log_lik_fn is not None:
                    u_new = self._translate(row, task, u_new, counts, log_lik_fn, temp, gen)
                logits = torch.log(counts + m.alpha) - 0.5 * float(self.lam[row]) * self._sq_dist(
                    u_new, torch.arange(K)
                )
                self.z[row] = int(categorical(logits, gen))
        delta += self._contribution(float(self.lam[row]), int(self.z[row]), u_new, +1.0)
        return u_new, delta

    def _translate(self, row, task, u, counts, log_lik_fn, temp, gen) -> torch.Tensor:
        """The cluster move of ``StructuredGibbs._translate_move``: ``z -> k`` with ``u`` shifted along."""
        K, z = self.K, int(self.z[row])
        k = int(torch.randint(K - 1, (1,), generator=gen))
        k += int(k >= z)
        shifted = u + (self._phi32[k] - self._phi32[z])
        c = self.model.center.float()
        ll = log_lik_fn(task, torch.stack([c + u, c + shifted])).double()
        log_ratio = (ll[1] - ll[0]) / temp + math.log(
            (float(counts[k]) + self.model.alpha) / (float(counts[z]) + self.model.alpha)
        )
        self.proposed_moves += 1
        if math.log(float(torch.rand(1, dtype=torch.float64, generator=gen))) < float(log_ratio):
            self.z[row] = k
            self.accepted_moves += 1
            return shifted
        return u

    def update(self, total: torch.Tensor, temp: float, step: int) -> None:
        W, S, Q, counts, touched = self._unpack(total)
        self.W += W
        self.S += S
        self.Q += Q
        self.counts += counts
        self.draw(temp, [k for k in range(self.K) if float(touched[k]) > 0])
        if temp > 0 and self.model.learn_spread and step % self.spread_every == 0:
            m, v = self.model, self.phi_v
            per_coord = (self.Q - 2.0 * v * self.S + self.W[:, None] * v.square()).sum(0).clamp_min(0.0)
            ss = torch.zeros(m.n_blocks, dtype=torch.float64).index_add_(0, m.block_index, per_coord)
            shape = m.spread_a0 + 0.5 * self.n_tasks * m.block_sizes
            rate = m.spread_a0 * m.beta**2 + 0.5 * ss
            self._set_spread(inverse_gamma(shape, rate, self.generator))

    def phi_offset(self) -> torch.Tensor:
        """Count-weighted mean of the centres' offsets (d,) (traces and logs)."""
        w = self.counts / self.counts.sum()
        return w @ self.phi_v

    # -- posterior summary ---------------------------------------------------------------------------
    def _reset_shared_record(self) -> None:
        K, d = self.K, self.dim
        self.n_records = 0
        self.sum_phi = torch.zeros(K, d, dtype=torch.float64)
        self.sum_phi_sq = torch.zeros(K, d, dtype=torch.float64)
        self.sum_weights = torch.zeros(K, dtype=torch.float64)
        self.sum_beta2 = torch.zeros(self.model.n_blocks, dtype=torch.float64)

    def _reset_local_record(self, n: int) -> None:
        self.sum_lam = torch.zeros(n, dtype=torch.float64)
        self.assign_counts = torch.zeros(n, self.K, dtype=torch.float64)

    def record(self, temp: float) -> None:
        m = self.model
        self.draw(temp)
        self.n_records += 1
        self.sum_phi += self.phi_v
        self.sum_phi_sq += self.phi_v.square()
        self.sum_weights += (self.counts + m.alpha) / (self.n_tasks + self.K * m.alpha)
        self.sum_beta2 += self.beta2
        self.sum_lam += self.lam
        self.assign_counts[torch.arange(len(self.z)), self.z] += 1.0

    _SHARED = ("phi_v", "W", "S", "Q", "counts", "beta2", "sum_phi", "sum_phi_sq", "sum_weights", "sum_beta2")
    _LOCAL = ("lam", "z", "sum_lam", "assign_counts")

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {name: getattr(self, name).clone() for name in (*self._SHARED, *self._LOCAL)}
        state["generator"] = self.generator.get_state().clone()
        state["n_records"] = self.n_records
        state["moves"] = [self.proposed_moves, self.accepted_moves]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in (*self._SHARED, *self._LOCAL):
            setattr(self, name, state[name].clone())
        self._set_spread(self.beta2)
        self._phi32 = self.phi_v.float()
        self.generator.set_state(state["generator"].clone())
        self.n_records = int(state["n_records"])
        self.proposed_moves, self.accepted_moves = (int(v) for v in state["moves"])
