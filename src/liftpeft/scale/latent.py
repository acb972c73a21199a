"""The shared latents of a sharded run, held as sufficient statistics that the ranks add up.

Adapters are stored as offsets ``u_i = theta_i - c`` from the prior centre ``c``. Each latent offers:

``start(rows)``              the statistics of this rank's tasks at ``u = 0`` (before any step)
``set_stats(total)``         the all-reduced statistics; then ``draw(temp)`` draws the shared state
``theta_grad(row, u)``       ``d/dtheta log p(theta_i | shared)`` (d,) float32 for a local task
``visit(row, task, u_old, u_new, ...)``  the visited task's own draws; returns its final ``u`` and
                             its change of the statistics (a flat float64 vector of ``size``)
``update(total, temp, step, covered)``  add the all-reduced change of the ``covered`` steps up to
                             ``step`` and redraw the shared state

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

from liftpeft.core.prior import HierarchicalPrior
from liftpeft.core.sgld import PSGLDState, langevin_kernel
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

    def start_from_warmup(self, v: torch.Tensor, z: torch.Tensor, D: torch.Tensor, E: torch.Tensor,
                          n: torch.Tensor) -> None:  # fmt: skip
        """Continue from a warm-up: ``phi`` at its centre ``v`` (1, d) and ``S = n v + D``."""
        self.S = float(n[0]) * v[0].double() + D[0]
        self._set_v(v[0].double())

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

    def update(self, total: torch.Tensor, temp: float, step: int, covered: int = 1) -> None:
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
