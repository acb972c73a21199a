"""The structured prior's shared latent in a sharded run (the interface: ``scale.latent``)."""

from __future__ import annotations

import math
from typing import Any

import torch

from liftpeft.core.draws import categorical, gamma, inverse_gamma
from liftpeft.core.structured import StructuredHierarchy
from liftpeft.scale import keys
from liftpeft.scale.latent import LogLikFn


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

    def start_from_warmup(self, v: torch.Tensor, z: torch.Tensor, D: torch.Tensor, E: torch.Tensor,
                          n: torch.Tensor) -> None:  # fmt: skip
        """Continue from a warm-up's centres ``v`` (K, d), this shard's assignments ``z`` and the
        offsets' per-centre sums: with ``u_i = v_k + delta_i`` and ``lambda_i = 1``, ``S_k = n_k v_k + D_k``
        and ``Q_k = n_k v_k^2 + 2 v_k D_k + E_k``; then the centres are drawn from their conditionals."""
        v64 = v.double()
        self.z = z.clone()
        self.lam = torch.ones(len(z), dtype=torch.float64)
        self.W, self.counts = n.clone(), n.clone()
        self.S = n[:, None] * v64 + D
        self.Q = n[:, None] * v64.square() + 2.0 * v64 * D + E
        self._reset_shared_record()
        self._reset_local_record(len(z))
        self.draw(1.0)

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
        gen = keys.generator(self.seed, keys.LOCAL, step, task)
        counts = self.counts.clone()
        counts[int(self.z[row])] -= 1.0  # the task's own term leaves its cluster
        if temp > 0 and m.dof is not None:
            r2 = float(self._sq_dist(u_new, int(self.z[row])))
            shape = torch.tensor([(m.dof + self.dim) / 2.0], dtype=torch.float64)
            self.lam[row] = float(gamma(shape, gen)[0]) / ((m.dof + r2) / 2.0)
        if K > 1 and temp > 0:
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
        self.proposed_moves += 1
        log_ratio = (ll[1] - ll[0]) / temp + math.log(
            (float(counts[k]) + self.model.alpha) / (float(counts[z]) + self.model.alpha)
        )
        accept = math.log(float(torch.rand(1, dtype=torch.float64, generator=gen))) < float(log_ratio)
        if accept:
            self.z[row] = k
            self.accepted_moves += 1
            return shifted
        return u

    def update(self, total: torch.Tensor, temp: float, step: int, covered: int = 1) -> None:
        """Add the sum of the changes of the ``covered`` steps up to ``step``; redraw the touched centres
        (and the spread if one of those steps is a multiple of ``spread_every``)."""
        W, S, Q, counts, touched = self._unpack(total)
        self.W += W
        self.S += S
        self.Q += Q
        self.counts += counts
        self.draw(temp, [k for k in range(self.K) if float(touched[k]) > 0])
        spread_due = step // self.spread_every != (step - covered) // self.spread_every
        if temp > 0 and self.model.learn_spread and spread_due:
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
