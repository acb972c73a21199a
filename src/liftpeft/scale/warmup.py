"""The warm-up of a sharded run: Adam in non-centred coordinates, data-parallel over tasks.

The same objective as ``core.warmup.HierarchicalWarmup`` / ``ClusteredWarmup`` (see there why the
non-centred coordinates ``theta_i = phi_{z_i} + delta_i`` are the fast ones): the visited tasks'
offsets ``delta_i`` take an Adam step on their prior and their likelihood, and each centre ``phi_k``
an Adam step on its prior and ``(N / B) sum_{visited i in k} g_i``. The offsets and their Adam moments
live in the rank's bank (the ``theta`` field holds ``delta_i`` until the chain starts); the ranks
all-reduce, per step, the visited tasks' likelihood gradients per centre and the change of the
offsets' per-centre sums ``D_k = sum delta_i`` and ``E_k = sum delta_i^2``, so that the chain can start
from the exact statistics of ``u_i = phi_k - c + delta_i`` without reading every adapter again.
After ``assign_after`` steps a visited task moves to the centre under which its offset fits its data
best (hard EM by its likelihood, K forward passes), its offset carried along.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from liftpeft.core.warmup import adam_direction
from liftpeft.scale.latent import LogLikFn
from liftpeft.scale.structured_latent import StructuredLatent

WARMUP_FIELDS = ("delta_m", "delta_v")


class ShardedWarmup:
    def __init__(self, sampler: Any, lr: float, sigma: float, beta: float, assign_after: int = 0) -> None:
        if not lr > 0:
            raise ValueError(f"the warm-up's learning rate must be > 0, got {lr}")
        self.sampler, self.lr, self.sigma, self.beta = sampler, float(lr), float(sigma), float(beta)
        self.assign_after = int(assign_after)
        latent = sampler.latent
        self.K = latent.K if isinstance(latent, StructuredLatent) else 1
        K, d = self.K, sampler.dim
        self._z = torch.zeros(len(sampler.tasks), dtype=torch.long)  # the paper's model: one centre
        self.v = torch.zeros(K, d)  # phi_k - c
        self.phi_m, self.phi_v = torch.zeros(K, d), torch.zeros(K, d)
        self.phi_count = torch.zeros(K, dtype=torch.long)
        self.D = torch.zeros(K, d, dtype=torch.float64)
        self.E = torch.zeros(K, d, dtype=torch.float64)
        local = torch.bincount(self.z, minlength=K).double()  # needs self._z set above
        self.n = sampler.comm.all_reduce_sum(local)
        self.delta_count = torch.zeros(len(sampler.tasks), 1, dtype=torch.long)

    @property
    def z(self) -> torch.Tensor:
        """This shard's assignments: the structured latent's own (shared with the chain), else zeros."""
        latent = self.sampler.latent
        return latent.z if isinstance(latent, StructuredLatent) else self._z

    @property
    def phi(self) -> torch.Tensor:
        """Size-weighted mean of the centres (d,) (logs)."""
        return self.sampler.center + (self.n / self.n.sum()).float() @ self.v

    def step(self, tasks: Sequence[int], grad_fn: Callable[[int, torch.Tensor], torch.Tensor],
             log_lik_fn: LogLikFn | None = None) -> None:  # fmt: skip
        s = self.sampler
        s.flush()
        K, d, step = self.K, s.dim, s.step_count
        flat = torch.zeros(3 * K * d + 2 * K, dtype=torch.float64)
        G, dD, dE, B, dn = flat.split([K * d, K * d, K * d, K, K])
        G, dD, dE = G.view(K, d), dD.view(K, d), dE.view(K, d)
        phis = s.center + self.v  # (K, d)
        for i in (int(t) for t in tasks):
            if not s.owns(i):
                continue
            r = i // s.world_size
            delta = s.bank.read("theta", r)
            old = int(self.z[r])
            if K > 1 and log_lik_fn is not None and step >= self.assign_after:
                new = int(log_lik_fn(i, phis + delta).argmax())
                if new != old:
                    d64 = delta.double()
                    dD[old] -= d64
                    dE[old] -= d64.square()
                    dn[old] -= 1
                    dD[new] += d64
                    dE[new] += d64.square()
                    dn[new] += 1
                    self.z[r] = new
            k = int(self.z[r])
            g = grad_fn(i, phis[k] + delta)
            if g.shape != delta.shape or not bool(torch.isfinite(g).all()):
                raise FloatingPointError(
                    f"the likelihood gradient of task {i} at warm-up step {step} is non-finite"
                )
            self.delta_count[r] += 1
            direction, m, v = adam_direction(
                -delta / self.beta**2 + g,
                s.bank.read("delta_m", r),
                s.bank.read("delta_v", r),
                self.delta_count[r],
            )
            new_delta = delta + self.lr * direction
            dD[k] += new_delta.double() - delta.double()
            dE[k] += new_delta.double().square() - delta.double().square()
            G[k] += g.double()
            B[k] += 1
            s.bank.write("theta", r, new_delta)
            s.bank.write("delta_m", r, m)
            s.bank.write("delta_v", r, v)
        total = s.comm.all_reduce_sum(flat)
        G, dD, dE, B, dn = total.split([K * d, K * d, K * d, K, K])
        self.D += dD.view(K, d)
        self.E += dE.view(K, d)
        self.n += dn
        n_tasks, visited = s.n_tasks, len(tasks)
        for k in range(K):
            if float(B[k]) == 0:
                continue
            g_phi = -self.v[k] / self.sigma**2 + (n_tasks / visited) * G.view(K, d)[k].float()
            self.phi_count[k] += 1
            direction, self.phi_m[k], self.phi_v[k] = adam_direction(
                g_phi, self.phi_m[k], self.phi_v[k], int(self.phi_count[k])
            )
            self.v[k] = self.v[k] + self.lr * direction
        s.step_count += 1

    _STATE = ("v", "phi_m", "phi_v", "phi_count", "D", "E", "n", "delta_count", "_z")

    def state_dict(self) -> dict[str, Any]:
        return {name.lstrip("_"): getattr(self, name).clone() for name in self._STATE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self._STATE:
            setattr(self, name, state[name.lstrip("_")].clone())
