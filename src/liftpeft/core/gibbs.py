"""SGLD-Gibbs: the posterior sampler of LiFT's meta-training (SPEC section 2).

Each step visits one task ``i`` (or a batch of tasks) and updates its adapter and the shared latent:

    theta_i <- theta_i + (eta/2) (d/dtheta log p(theta_i|phi) + d/dtheta log p(D_i|theta_i)) + sqrt(eta T) z
    phi     <- phi + (eta_phi/2) (d/dphi log p(phi) + G) + sqrt(eta_phi T) z

where ``G`` approximates or equals ``sum_i d/dphi log p(theta_i|phi) = sum_i (theta_i - phi) / beta^2``:

``"cavity"``  the paper's cache ``J``. Each task keeps the contribution ``(theta_i - phi_then)/beta^2``
              it made at its last visit; a visit subtracts that cached term and adds the new one, so
              ``J`` is stale for unvisited tasks (their terms hold the ``phi`` of their last visit).
``"exact"``   keeps ``S = sum_i theta_i`` up to date (O(d) per step) and uses ``(S - N phi)/beta^2``,
              exact at the current ``phi``.
``"gibbs"``   draws ``phi`` exactly from its Gaussian conditional ``N(mean, var)`` with
              ``1/var = 1/sigma^2 + N/beta^2`` and ``mean = var (c/sigma^2 + S/beta^2)``: no step size.
``"sample"``  ablation (the reviewers' "one-task sample approximation"): ``G = N (theta_i - phi)/beta^2``
              from the visited task alone.

Every mode costs O(B d) per step for B visited tasks, independent of the number of tasks N.
Memory is ``theta`` (N, d) plus, for ``"cavity"``, the per-task cache (N, d).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from liftpeft.core.prior import HierarchicalPrior
from liftpeft.core.sgld import (
    PRECONDITIONERS,
    PSGLDState,
    check_step_size,
    langevin_kernel,
    langevin_noise,
    recommended_step_size,
)

PHI_UPDATES = ("cavity", "exact", "gibbs", "sample")

GradFn = Callable[[torch.Tensor], torch.Tensor]


def _all_finite(x: torch.Tensor) -> bool:
    """``torch.isfinite(x).all()``, decided by one sum when it is finite (the usual case).

    A NaN or inf element makes the sum non-finite, so a finite sum proves every element finite; only
    a non-finite sum (which finite elements can also give, by overflow) needs the elementwise check,
    which costs ~10x more on large vectors.
    """
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


class NonFiniteError(FloatingPointError):
    """A gradient or sample became NaN/inf; the message names the task and the step."""


class SGLDGibbs:
    """SGLD-Gibbs sampler over ``phi`` (d,) and ``theta`` (n_tasks, d).

    Args:
        prior: the hierarchical prior (sigma, beta, center).
        n_tasks: number of training tasks ``N``.
        dim: adapter dimension ``d``.
        step_size: SGLD step size ``eta`` for the task adapters.
        phi_update: ``"cavity"``, ``"exact"``, ``"gibbs"`` (or the ablation ``"sample"``).
        temperature: SGLD temperature ``T`` (1 samples the posterior, 0 is gradient ascent).
        seed: seed of the sampler's own ``torch.Generator`` (``None`` draws one).
        phi_step_size: step size for ``phi`` (defaults to ``step_size``; unused by ``"gibbs"``).
        preconditioner: ``None`` (plain SGLD) or ``"rmsprop"`` (pSGLD, per task and for ``phi``).
        init: ``(d,)`` starting point of ``phi`` and every ``theta_i`` (default: the prior center, or 0).
        dtype, device: of the state tensors.
        resync_every: recompute the running sums exactly every this many steps (float drift).
        check_stability: refuse step sizes that provably diverge on the prior's Gaussian terms.
    """

    def __init__(
        self,
        prior: HierarchicalPrior,
        n_tasks: int,
        dim: int,
        step_size: float,
        phi_update: str = "exact",
        temperature: float = 1.0,
        seed: int | None = None,
        *,
        phi_step_size: float | None = None,
        preconditioner: str | None = None,
        rmsprop_alpha: float = 0.99,
        rmsprop_eps: float = 1e-5,
        init: torch.Tensor | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        resync_every: int = 1000,
        check_stability: bool = True,
        rmsprop_max_gain: float | None = None,
    ) -> None:
        if phi_update not in PHI_UPDATES:
            raise ValueError(f"phi_update must be one of {PHI_UPDATES}, got {phi_update!r}")
        if preconditioner not in PRECONDITIONERS:
            raise ValueError(f"preconditioner must be None or 'rmsprop', got {preconditioner!r}")
        if n_tasks < 1 or dim < 1:
            raise ValueError(f"n_tasks and dim must be >= 1, got n_tasks={n_tasks}, dim={dim}")
        if not (temperature >= 0 and math.isfinite(temperature)):
            raise ValueError(f"temperature must be finite and >= 0, got {temperature!r}")
        if resync_every < 1:
            raise ValueError(f"resync_every must be >= 1, got {resync_every}")
        self.prior = prior
        self.n_tasks = int(n_tasks)
        self.dim = int(dim)
        self.step_size = float(step_size)
        self.phi_step_size = float(step_size if phi_step_size is None else phi_step_size)
        self.phi_update = phi_update
        self.temperature = float(temperature)
        self.preconditioner = preconditioner
        self.kernel = langevin_kernel(preconditioner, rmsprop_alpha, rmsprop_eps, rmsprop_max_gain)
        self.rmsprop_alpha = rmsprop_alpha
        self.rmsprop_eps = rmsprop_eps
        self.resync_every = int(resync_every)
        if check_stability and preconditioner is None:
            self._check_stability()

        device = torch.device(device) if device is not None else torch.device("cpu")
        self.seed = int(torch.randint(0, 2**62, (1,)).item()) if seed is None else int(seed)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(self.seed)

        if init is None:
            init = prior.center if prior.center is not None else torch.zeros(dim)
        if init.shape != (dim,):
            raise ValueError(f"init must have shape ({dim},), got {tuple(init.shape)}")
        init = init.to(device=device, dtype=dtype)
        self.phi = init.clone()
        self.theta = init.expand(self.n_tasks, dim).clone()
        self._theta_sq = torch.zeros_like(self.theta) if preconditioner else None
        self._phi_sq = torch.zeros_like(self.phi) if preconditioner else None
        self._theta_visits = torch.zeros(self.n_tasks, 1, dtype=torch.long, device=device)
        self._phi_visits = 0
        self.step_count = 0
        self._resync()

    # -- setup -----------------------------------------------------------------------------------
    def _check_stability(self) -> None:
        prior = self.prior
        check_step_size(
            self.step_size,
            prior.theta_curvature,
            "the task adapters theta_i (the term log p(theta_i | phi) has curvature 1/beta^2 "
            f"= {prior.theta_curvature:g})",
            f"Lower step_size below {recommended_step_size(prior.theta_curvature):.3g}, raise beta, "
            "or use preconditioner='rmsprop'.",
        )
        if self.phi_update == "gibbs":
            return
        curvature = prior.phi_curvature(self.n_tasks)
        check_step_size(
            self.phi_step_size,
            curvature,
            f"phi (1/sigma^2 + N/beta^2 = {curvature:g} with N = {self.n_tasks} tasks)",
            "Use phi_update='gibbs' (an exact draw of phi, no step size) or set phi_step_size "
            f"below {recommended_step_size(curvature):.3g}.",
        )

    def set_state(self, phi: torch.Tensor | None = None, theta: torch.Tensor | None = None) -> None:
        """Overwrite ``phi`` (d,) and/or ``theta`` ((n_tasks, d) or (d,) for all tasks)."""
        if phi is not None:
            self.phi = phi.to(self.phi).clone().reshape(self.dim)
        if theta is not None:
            self.theta = theta.to(self.theta).expand(self.n_tasks, self.dim).clone()
        self._resync()

    def _resync(self) -> None:
        """Recompute the O(N d) sums from scratch (start, after ``set_state``, every ``resync_every``)."""
        self._theta_sum = self.theta.sum(0)
        if self.phi_update == "cavity":
            self._cavity_cache = self.prior.grad_phi_log_prob_theta(self.theta, self.phi)
            self._cavity_sum = self._cavity_cache.sum(0)

    @property
    def theta_sum(self) -> torch.Tensor:
        """``S = sum_i theta_i``, maintained incrementally (d,)."""
        return self._theta_sum

    # -- the step ---------------------------------------------------------------------------------
    def step(
        self,
        task_index: int | torch.Tensor,
        grad_fn: GradFn,
        temperature: float | None = None,
    ) -> None:
        """Update ``theta`` of the visited task(s), then ``phi``.

        Args:
            task_index: an int, or a 1-D tensor of distinct task indices (a batch of tasks).
            grad_fn: ``grad_fn(theta_rows)`` returns ``d/dtheta log p(D_i | theta_i)`` (a minibatch
                estimate) with the shape of its argument: ``(d,)`` for an int index, ``(B, d)`` for B indices.
            temperature: overrides the sampler's temperature for this step (0 for warm-up).
        """
        temp = self.temperature if temperature is None else float(temperature)
        idx, slot = self._rows(task_index)
        rows = self.theta[slot]  # (B, d): a view for one task, a copy for a batch; read before writing
        single = not isinstance(task_index, torch.Tensor) or task_index.dim() == 0
        arg = rows[0].clone() if single else rows.clone()
        grad_lik = grad_fn(arg)
        if grad_lik.shape != arg.shape:
            raise ValueError(f"grad_fn returned shape {tuple(grad_lik.shape)}, expected {tuple(arg.shape)}")
        grad_lik = grad_lik.reshape(rows.shape)
        if not _all_finite(grad_lik):
            raise NonFiniteError(
                f"non-finite likelihood gradient for task(s) {idx.tolist()} at step {self.step_count}; "
                "lower the step size or the likelihood scale, and resume from the last checkpoint"
            )
        new_rows = self._step_theta(slot, rows, grad_lik.to(rows), temp)
        self._theta_sum += (new_rows - rows).sum(0)
        self.theta[slot] = new_rows
        if self.phi_update == "cavity":
            fresh = self.prior.grad_phi_log_prob_theta(new_rows, self.phi)
            self._cavity_sum += (fresh - self._cavity_cache[slot]).sum(0)
            self._cavity_cache[slot] = fresh
        self._step_phi(new_rows, temp)
        self.step_count += 1
        if self.step_count % self.resync_every == 0:
            self._resync()

    def _rows(self, task_index: int | torch.Tensor) -> tuple[torch.Tensor, slice | torch.Tensor]:
        """Checked indices ``idx`` (B,) and the ``slot`` that addresses their rows of the state.

        One task is addressed by a slice (views of its rows, no gather or scatter); a batch by ``idx``.
        """
        idx = torch.as_tensor(task_index, dtype=torch.long, device=self.theta.device).reshape(-1)
        if idx.numel() == 0:
            raise ValueError("task_index is empty")
        if idx.numel() == 1:
            i = int(idx)
            if not 0 <= i < self.n_tasks:
                raise IndexError(f"task index out of range [0, {self.n_tasks}): {[i]}")
            return idx, slice(i, i + 1)
        if idx.min() < 0 or idx.max() >= self.n_tasks:
            raise IndexError(f"task index out of range [0, {self.n_tasks}): {idx.tolist()}")
        if idx.unique().numel() != idx.numel():
            raise ValueError(f"task indices in one step must be distinct, got {idx.tolist()}")
        return idx, idx

    def _step_theta(
        self, slot: slice | torch.Tensor, rows: torch.Tensor, grad_lik: torch.Tensor, temp: float
    ) -> torch.Tensor:
        grad = self.prior.grad_theta_log_prob_theta(rows, self.phi).add_(grad_lik)  # (B, d)
        state = None if self._theta_sq is None else PSGLDState(self._theta_sq[slot], self._theta_visits[slot])
        new_rows, state = self.kernel.step(rows, grad, state, self.step_size, self.generator, temp)
        if state is not None:  # pSGLD: the visited tasks' RMSprop statistics
            self._theta_sq[slot] = state.square_avg
            self._theta_visits[slot] = state.count
        return new_rows

    def _phi_task_term(self, visited_rows: torch.Tensor) -> torch.Tensor:
        """The mode's estimate of ``sum_i d/dphi log p(theta_i | phi)`` (d,)."""
        if self.phi_update == "exact":
            return (self._theta_sum - self.n_tasks * self.phi) / self.prior.beta**2
        if self.phi_update == "cavity":
            return self._cavity_sum
        # "sample": the visited tasks stand for all N
        mean_term = self.prior.grad_phi_log_prob_theta(visited_rows, self.phi).mean(0)
        return self.n_tasks * mean_term

    def _step_phi(self, visited_rows: torch.Tensor, temp: float) -> None:
        if self.phi_update == "gibbs":
            mean, var = self.prior.phi_conditional(self._theta_sum, self.n_tasks)
            if temp > 0:  # mean + sqrt(var T) z, with the product written into the noise buffer
                self.phi = langevin_noise(mean, self.generator).mul_(math.sqrt(var * temp)).add_(mean)
            else:
                self.phi = mean + 0.0
            return
        grad = self.prior.grad_log_prob_phi(self.phi) + self._phi_task_term(visited_rows)
        state = None if self._phi_sq is None else PSGLDState(self._phi_sq, self._phi_visits)
        self.phi, state = self.kernel.step(self.phi, grad, state, self.phi_step_size, self.generator, temp)
        if state is not None:
            self._phi_sq, self._phi_visits = state.square_avg, int(state.count)
        if not _all_finite(self.phi):
            raise NonFiniteError(
                f"phi became non-finite at step {self.step_count}; lower phi_step_size or use "
                "phi_update='gibbs'"
            )

    # -- checkpointing ----------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {
            "n_tasks": self.n_tasks,
            "dim": self.dim,
            "phi_update": self.phi_update,
            "preconditioner": self.preconditioner,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically (tensors cloned, RNG state included)."""
        state: dict[str, Any] = {
            "config": self._config(),
            "step_count": self.step_count,
            "seed": self.seed,
            "generator_state": self.generator.get_state().clone(),
            "phi": self.phi.clone(),
            "theta": self.theta.clone(),
            "theta_sum": self._theta_sum.clone(),
        }
        if self.phi_update == "cavity":
            state["cavity_cache"] = self._cavity_cache.clone()
            state["cavity_sum"] = self._cavity_sum.clone()
        if self.preconditioner:
            state["theta_sq"] = self._theta_sq.clone()  # type: ignore[union-attr]
            state["phi_sq"] = self._phi_sq.clone()  # type: ignore[union-attr]
            state["theta_visits"] = self._theta_visits.clone()
            state["phi_visits"] = self._phi_visits
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["config"] != self._config():
            raise ValueError(
                f"state was saved by a sampler configured as {state['config']}, this one is "
                f"{self._config()}; build the sampler with the same settings before loading"
            )
        self.step_count = int(state["step_count"])
        self.seed = int(state["seed"])
        self.generator.set_state(state["generator_state"].clone())
        self.phi = state["phi"].to(self.phi).clone()
        self.theta = state["theta"].to(self.theta).clone()
        self._theta_sum = state["theta_sum"].to(self.phi).clone()
        if self.phi_update == "cavity":
            self._cavity_cache = state["cavity_cache"].to(self.theta).clone()
            self._cavity_sum = state["cavity_sum"].to(self.phi).clone()
        if self.preconditioner:
            self._theta_sq = state["theta_sq"].to(self.theta).clone()
            self._phi_sq = state["phi_sq"].to(self.phi).clone()
            self._theta_visits = state["theta_visits"].clone()
            self._phi_visits = int(state["phi_visits"])

    def __repr__(self) -> str:
        return (
            f"SGLDGibbs(n_tasks={self.n_tasks}, dim={self.dim}, step_size={self.step_size:g}, "
            f"phi_update={self.phi_update!r}, temperature={self.temperature:g}, step={self.step_count})"
        )
