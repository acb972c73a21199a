"""The structured hierarchy (SPEC section 10): a learned task spread, task clusters and heavy tails.

    phi_k               ~ N(c, sigma^2 I)                      k = 1..K   cluster centres
    z_i                 ~ Cat(pi),  pi ~ Dirichlet(alpha)             the task's cluster
    beta_m^2            ~ InvGamma(a0, a0 beta0^2)               m = 1..B   spread of block m
    lambda_i            ~ Gamma(nu/2, rate nu/2)                       the task's scale (Student-t)
    theta_i | ...       ~ N(phi_{z_i}, diag(beta_{m(j)}^2) / lambda_i)

Each piece is a switch: ``K = 1`` is one shared centre, ``learn_spread=False`` keeps ``beta = beta0``
(the paper's constant), ``dof=None`` keeps ``lambda_i = 1`` (Gaussian tails). With all three off the
model is the paper's hierarchy and the sampler its ``"gibbs"`` mode.

``StructuredGibbs`` runs SGLD on the visited task's adapter and then exact Gibbs draws of every
other unknown, from running sums kept per cluster (centred at ``c``, float64):

    W_k = sum_{z_i=k} lambda_i,   S_k = sum_{z_i=k} lambda_i (theta_i - c),   Q_k = sum lambda_i (theta_i - c)^2

* ``lambda_i | .  ~ Gamma((nu + d)/2, rate (nu + r_i^2)/2)``, ``r_i^2 = sum_j (theta_ij - phi_{z_i j})^2 / beta_j^2``
* ``z_i | .       ∝ (n_k^{-i} + alpha) N(theta_i; phi_k, beta^2 / lambda_i)``      (pi integrated out)
* ``phi_k | .     ~ N(c + (S_k / beta^2) / P_k, 1 / P_k)``, ``P_k = 1/sigma^2 + W_k / beta^2``
* ``beta_m^2 | .  ~ InvGamma(a0 + N d_m / 2, a0 beta0^2 + 1/2 sum_k sum_{j in m} Q_kj - 2 v_kj S_kj + W_k v_kj^2)``
  with ``v_k = phi_k - c``.

A step costs O(B d + K d) for B visited tasks, independent of the number of tasks N: only the
centres whose sums changed are redrawn at a step (all of them at every ``record()``), and the spread
every ``spread_every`` steps (its conditional, of shape ``N d_m / 2``, moves slowly).

Two traps (SPEC section 10). Along directions that no task's data constrain, ``theta_i - phi`` is
prior noise, so the spread's conditional is centred on whatever spread the chain holds there: after a
noise-free warm-up those offsets are exactly zero and the spread would collapse. ``initialize``
therefore draws the starting offsets from the prior (``jitter``), so the data-free directions start
in equilibrium; and the spread is never updated at temperature 0 (a MAP over ``beta`` collapses it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from liftpeft.core.draws import categorical, gamma, inverse_gamma
from liftpeft.core.gibbs import NonFiniteError
from liftpeft.core.kmeans import kmeans
from liftpeft.core.sgld import PSGLDState, check_step_size, langevin_kernel, recommended_step_size

SPREADS = ("fixed", "global", "tensor", "coordinate")

GradFn = Callable[[torch.Tensor], torch.Tensor]
LogLikFn = Callable[[int, torch.Tensor], torch.Tensor]


def spread_blocks(
    mode: str, dim: int, names: Sequence[str] = (), numels: Sequence[int] = ()
) -> tuple[torch.Tensor, list[str]]:
    """Block of every coordinate ``(d,)`` and the block names, for a spread ``mode``.

    ``"fixed"`` and ``"global"``: one block; ``"tensor"``: one per named tensor of the adapter (``names``
    and ``numels`` from its ``FlatSpec``; one block when they are not given); ``"coordinate"``: ``d``.
    """
    if mode not in SPREADS:
        raise ValueError(f"spread must be one of {SPREADS}, got {mode!r}")
    if mode == "coordinate":
        return torch.arange(dim), [str(j) for j in range(dim)]
    if mode == "tensor" and names:
        if sum(numels) != dim or len(names) != len(numels):
            raise ValueError(f"the adapter's tensors hold {sum(numels)} numbers, the prior has {dim}")
        index = torch.repeat_interleave(torch.arange(len(names)), torch.as_tensor(list(numels)))
        return index, list(names)
    return torch.zeros(dim, dtype=torch.long), ["all"]


class StructuredHierarchy:
    """Hyperparameters of the structured model (see the module docstring).

    Args:
        sigma: std of ``p(phi_k)`` around ``center``.
        beta: the task spread ``beta0``: fixed, or the start and hyperprior scale of the learned one.
        center: ``(d,)`` PEFT initialisation ``c``.
        block_index: ``(d,)`` block of each coordinate (``spread_blocks``).
        learn_spread: infer ``beta_m`` (else keep ``beta0``).
        clusters: number of task clusters ``K``.
        alpha: Dirichlet concentration per cluster.
        dof: Student-t degrees of freedom ``nu`` (``None``: Gaussian task prior).
        spread_a0: inverse-gamma shape ``a0`` of the spread's hyperprior (its rate is ``a0 beta0^2``,
            so ``E[1/beta^2] = 1/beta0^2`` a priori).
    """

    def __init__(
        self,
        sigma: float,
        beta: float,
        center: torch.Tensor,
        block_index: torch.Tensor | None = None,
        *,
        learn_spread: bool = False,
        clusters: int = 1,
        alpha: float = 1.0,
        dof: float | None = None,
        spread_a0: float = 1.0,
    ) -> None:
        for name, value in (("sigma", sigma), ("beta", beta), ("alpha", alpha), ("spread_a0", spread_a0)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if dof is not None and not (math.isfinite(dof) and dof > 0):
            raise ValueError(f"dof (Student-t degrees of freedom) must be > 0 or None, got {dof!r}")
        if clusters < 1:
            raise ValueError(f"clusters must be >= 1, got {clusters}")
        if center.dim() != 1:
            raise ValueError(f"center must be a flat (d,) vector, got shape {tuple(center.shape)}")
        d = center.shape[0]
        block_index = torch.zeros(d, dtype=torch.long) if block_index is None else block_index.long()
        if block_index.shape != (d,) or int(block_index.min()) < 0:
            raise ValueError(f"block_index must be a (d,) = ({d},) tensor of block numbers >= 0")
        self.sigma, self.beta = float(sigma), float(beta)
        self.center = center.detach().to(torch.float64).clone()
        self.block_index = block_index.clone()
        self.n_blocks = int(block_index.max()) + 1
        self.block_sizes = torch.bincount(block_index, minlength=self.n_blocks).to(torch.float64)
        self.learn_spread = bool(learn_spread)
        self.clusters = int(clusters)
        self.alpha = float(alpha)
        self.dof = None if dof is None else float(dof)
        self.spread_a0 = float(spread_a0)

    @property
    def dim(self) -> int:
        return self.center.shape[0]

    def settings(self) -> dict[str, Any]:
        return {
            "sigma": self.sigma,
            "beta": self.beta,
            "n_blocks": self.n_blocks,
            "learn_spread": self.learn_spread,
            "clusters": self.clusters,
            "alpha": self.alpha,
            "dof": self.dof,
            "spread_a0": self.spread_a0,
        }


def posterior_summary(
    model: StructuredHierarchy,
    n_records: int,
    sum_phi: torch.Tensor,
    sum_phi_sq: torch.Tensor,
    sum_weights: torch.Tensor,
    sum_beta2: torch.Tensor,
    sum_lam: torch.Tensor,
    assign_counts: torch.Tensor,
    variance_floor: float = 1e-12,
) -> dict[str, torch.Tensor]:
    """Posterior means from the running sums over ``n_records`` recorded states (``StructuredGibbs.summary``).

    ``sum_phi``, ``sum_phi_sq`` (K, d): sums of the centres' offsets from ``c`` and their squares;
    ``sum_weights`` (K,), ``sum_beta2`` (B,), ``sum_lam`` (N,), ``assign_counts`` (N, K).
    """
    n = float(n_records)
    mean = sum_phi / n
    var = (sum_phi_sq / n - mean.square()).clamp_min(variance_floor)
    spread = sum_beta2 / n
    return {
        "means": (mean + model.center).float(),
        "covariances": var.float(),
        "weights": (sum_weights / sum_weights.sum()).float(),
        "spread": spread.float(),
        "task_variance": spread[model.block_index].float(),
        "task_scale": (sum_lam / n).float(),
        "assignments": (assign_counts / n).float(),
    }


class StructuredGibbs:
    """SGLD on the visited tasks' adapters, exact Gibbs draws of ``lambda``, ``z``, ``phi_k`` and ``beta``.

    Same calling convention as ``SGLDGibbs``: ``step(task_index, grad_fn)`` with ``grad_fn(theta_rows)``
    returning ``d/dtheta log p(D_i | theta_i)``. ``initialize(theta)`` starts the chain (from a
    warm-up); ``record()`` adds the current state to the posterior summary that ``summary()`` returns.
    """

    def __init__(
        self,
        model: StructuredHierarchy,
        n_tasks: int,
        step_size: float,
        temperature: float = 1.0,
        seed: int = 0,
        *,
        preconditioner: str | None = None,
        rmsprop_alpha: float = 0.99,
        rmsprop_eps: float = 1e-5,
        resync_every: int = 1000,
        check_stability: bool = True,
        jitter: bool = False,
        spread_every: int = 10,
        rmsprop_max_gain: float | None = None,
    ) -> None:
        if n_tasks < model.clusters:
            raise ValueError(f"{model.clusters} clusters need at least as many tasks, got {n_tasks}")
        if not (temperature >= 0 and math.isfinite(temperature)):
            raise ValueError(f"temperature must be finite and >= 0, got {temperature!r}")
        self.model = model
        self.n_tasks, self.dim = int(n_tasks), model.dim
        self.step_size, self.temperature = float(step_size), float(temperature)
        self.preconditioner = preconditioner
        self.kernel = langevin_kernel(preconditioner, rmsprop_alpha, rmsprop_eps, rmsprop_max_gain)
        self.resync_every = int(resync_every)
        if spread_every < 1:
            raise ValueError(f"spread_every must be >= 1, got {spread_every}")
        self.spread_every = int(spread_every)
        if check_stability and preconditioner is None:
            curvature = 1.0 / model.beta**2
            check_step_size(
                step_size,
                curvature,
                f"the task adapters theta_i (the task prior has curvature 1/beta^2 = {curvature:g})",
                f"Lower step_size below {recommended_step_size(curvature):.3g} or use preconditioner='rmsprop'.",
            )
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.step_count = 0
        self.proposed_moves = self.accepted_moves = 0
        self.jitter = jitter
        self.initialize(model.center.float().expand(self.n_tasks, self.dim), jitter=False)

    # -- state -------------------------------------------------------------------------------------
    def initialize(
        self, theta: torch.Tensor, jitter: bool | None = None, assignments: torch.Tensor | None = None
    ) -> None:
        """Start from adapters ``theta`` (N, d) and ``assignments`` (N,) (default: k-means of ``theta``).

        ``jitter`` (default: when the spread is learned) adds ``N(0, beta0^2)`` to every adapter, so
        that directions no data constrain start at the prior's spread instead of at zero.
        """
        m = self.model
        if jitter is None:
            jitter = m.learn_spread and self.jitter
        self.theta = theta.detach().to(torch.float32).expand(self.n_tasks, self.dim).clone()
        if jitter:
            noise = torch.randn(self.theta.shape, generator=self.generator, dtype=torch.float32)
            self.theta.add_(noise.mul_(m.beta))
        self.lam = torch.ones(self.n_tasks, dtype=torch.float64)
        self._set_spread(torch.full((m.n_blocks,), m.beta**2, dtype=torch.float64))
        if assignments is not None:
            self.z = assignments.long().clone()
        elif m.clusters > 1:
            self.z, _ = kmeans(self.theta.double() - m.center, m.clusters, n_init=4, generator=self.generator)
        else:
            self.z = torch.zeros(self.n_tasks, dtype=torch.long)
        self._theta_sq = torch.zeros_like(self.theta) if self.preconditioner else None
        self._visits = torch.zeros(self.n_tasks, 1, dtype=torch.long)
        self._resync()
        self.phi = torch.empty(m.clusters, self.dim, dtype=torch.float64)
        self._draw_phi(temp=1.0)
        self._reset_record()

    def _resync(self) -> None:
        """Recompute the per-cluster sums from scratch (start, and every ``resync_every`` steps)."""
        m, K = self.model, self.model.clusters
        u = self.theta.double() - m.center
        onehot = torch.nn.functional.one_hot(self.z, K).double() * self.lam[:, None]  # (N, K)
        self.W = onehot.sum(0)
        self.S = onehot.T @ u
        self.Q = onehot.T @ u.square()
        self.counts = torch.bincount(self.z, minlength=K)

    @property
    def phi_mean(self) -> torch.Tensor:
        """Count-weighted mean of the cluster centres ``(d,)`` (float32; traces and logs)."""
        w = self.counts.double() / self.counts.sum()
        return (w @ self.phi).float()

    # -- the step ------------------------------------------------------------------------------------
    def step(
        self,
        task_index: int | torch.Tensor,
        grad_fn: GradFn,
        temperature: float | None = None,
        log_lik_fn: LogLikFn | None = None,
    ) -> None:
        """One SGLD step of the visited tasks' adapters, then the Gibbs draws.

        ``log_lik_fn(i, rows)`` (optional) returns ``log p(D_i | theta)`` (a minibatch estimate) for each
        row of ``rows`` (n, d); with it, each visited task also proposes a move to another cluster that
        carries its offset along (``theta_i - phi_{z_i} + phi_k``), accepted by Metropolis-Hastings on
        its likelihood: a move that reads the task's data, which the distance-based draw of ``z_i``
        cannot (it only compares adapters, and mixes slowly while the centres are still close).
        """
        temp = self.temperature if temperature is None else float(temperature)
        idx = torch.as_tensor(task_index, dtype=torch.long).reshape(-1)
        if idx.numel() == 0 or int(idx.min()) < 0 or int(idx.max()) >= self.n_tasks:
            raise IndexError(f"task index out of range [0, {self.n_tasks}): {idx.tolist()}")
        if idx.unique().numel() != idx.numel():
            raise ValueError(f"task indices in one step must be distinct, got {idx.tolist()}")
        single = not isinstance(task_index, torch.Tensor) or task_index.dim() == 0
        rows = self.theta[idx]  # (B, d) copy
        grad_lik = grad_fn(rows[0].clone() if single else rows.clone())
        grad_lik = grad_lik.reshape(rows.shape).to(rows)
        if not bool(torch.isfinite(grad_lik).all()):
            raise NonFiniteError(
                f"non-finite likelihood gradient for task(s) {idx.tolist()} at step {self.step_count}; "
                "lower the step size or the likelihood scale, and resume from the last checkpoint"
            )
        centres = self.phi[self.z[idx]].float()  # (B, d)
        grad = (centres - rows).mul_(self.lam[idx, None].float()).mul_(self._inv_var32).add_(grad_lik)
        state = None if self._theta_sq is None else PSGLDState(self._theta_sq[idx], self._visits[idx])
        new_rows, state = self.kernel.step(rows, grad, state, self.step_size, self.generator, temp)
        if state is not None:
            self._theta_sq[idx], self._visits[idx] = state.square_avg, state.count
        touched = set(self.z[idx].tolist())
        for i in idx.tolist():  # the visited tasks leave their clusters' sums with their old adapters
            self._move(i, -1.0)
        self.theta[idx] = new_rows
        for i in idx.tolist():
            if temp > 0:
                if self.model.dof is not None:
                    self._draw_lambda(i)
                if self.model.clusters > 1:
                    if log_lik_fn is not None:
                        self._translate_move(i, log_lik_fn, temp)
                    self._draw_assignment(i)
            self._move(i, +1.0)
        # only the centres whose sums changed are redrawn (any scan of exact conditionals is valid);
        # record() redraws them all
        self._draw_phi(temp, sorted(touched | set(self.z[idx].tolist())))
        if temp > 0 and self.model.learn_spread and self.step_count % self.spread_every == 0:
            self._draw_spread()
        self.step_count += 1
        if self.step_count % self.resync_every == 0:
            self._resync()

    def _move(self, i: int, sign: float) -> None:
        """Add (``sign=+1``) or remove (``-1``) task ``i``'s terms from its cluster's sums."""
        k, lam = int(self.z[i]), float(self.lam[i])
        u = self.theta[i].double() - self.model.center
        self.W[k] += sign * lam
        self.S[k] += (sign * lam) * u
        self.Q[k] += (sign * lam) * u.square()
        self.counts[k] += int(sign)

    def _sq_dist(self, i: int, k: torch.Tensor | int) -> torch.Tensor:
        """``sum_j (theta_ij - phi_kj)^2 / beta_j^2`` for cluster(s) ``k``."""
        diff = self.theta[i].double() - self.phi[k]
        return (diff.square() * self._inv_var).sum(-1)

    def _draw_lambda(self, i: int) -> None:
        nu = self.model.dof
        r2 = float(self._sq_dist(i, int(self.z[i])))
        shape = torch.tensor([(nu + self.dim) / 2.0], dtype=torch.float64)
        self.lam[i] = float(gamma(shape, self.generator)[0]) / ((nu + r2) / 2.0)

    def _draw_assignment(self, i: int) -> None:
        all_k = torch.arange(self.model.clusters)
        logits = torch.log(self.counts.double() + self.model.alpha) - 0.5 * float(
            self.lam[i]
        ) * self._sq_dist(i, all_k)
        self.z[i] = int(categorical(logits, self.generator))

    def _translate_move(self, i: int, log_lik_fn: LogLikFn, temp: float) -> None:
        """Metropolis-Hastings: ``z_i -> k`` (uniform among the others) with ``theta_i`` shifted by
        ``phi_k - phi_{z_i}``. The shift keeps ``theta_i``'s prior density (its offset is unchanged) and
        is its own inverse, so the ratio is the likelihood's times the cluster sizes'."""
        K, z = self.model.clusters, int(self.z[i])
        k = int(torch.randint(K - 1, (1,), generator=self.generator))
        k += int(k >= z)
        shifted = self.theta[i] + (self.phi[k] - self.phi[z]).float()
        ll = log_lik_fn(i, torch.stack([self.theta[i], shifted])).double()
        log_ratio = (ll[1] - ll[0]) / temp + math.log(
            (float(self.counts[k]) + self.model.alpha) / (float(self.counts[z]) + self.model.alpha)
        )
        if math.log(float(torch.rand(1, dtype=torch.float64, generator=self.generator))) < float(log_ratio):
            self.z[i] = k
            self.theta[i] = shifted
            self.accepted_moves += 1
        self.proposed_moves += 1

    def _draw_phi(self, temp: float, clusters: list[int] | None = None) -> None:
        """Draw the centres ``clusters`` (default: all) from their Gaussian conditionals."""
        m = self.model
        rows = list(range(m.clusters)) if clusters is None else clusters
        precision = 1.0 / m.sigma**2 + self.W[rows, None] * self._inv_var  # (k, d)
        mean = (self.S[rows] * self._inv_var) / precision  # centred at c
        if temp > 0:
            noise = torch.randn(mean.shape, generator=self.generator, dtype=torch.float64)
            mean = mean + noise * torch.sqrt(temp / precision)
        self.phi[rows] = mean + m.center

    def _draw_spread(self) -> None:
        m = self.model
        v = self.phi - m.center  # (K, d)
        per_coord = (self.Q - 2.0 * v * self.S + self.W[:, None] * v.square()).sum(0).clamp_min(0.0)
        ss = torch.zeros(m.n_blocks, dtype=torch.float64).index_add_(0, m.block_index, per_coord)
        shape = m.spread_a0 + 0.5 * self.n_tasks * m.block_sizes
        rate = m.spread_a0 * m.beta**2 + 0.5 * ss
        self._set_spread(inverse_gamma(shape, rate, self.generator))

    def _set_spread(self, beta2: torch.Tensor) -> None:
        self.beta2 = beta2
        self._inv_var = 1.0 / beta2[self.model.block_index]  # (d,) float64
        self._inv_var32 = self._inv_var.float()

    # -- posterior summary ---------------------------------------------------------------------------
    def _reset_record(self) -> None:
        K, d = self.model.clusters, self.dim
        self._n_records = 0
        self._sum_phi = torch.zeros(K, d, dtype=torch.float64)
        self._sum_phi_sq = torch.zeros(K, d, dtype=torch.float64)
        self._sum_weights = torch.zeros(K, dtype=torch.float64)
        self._sum_beta2 = torch.zeros(self.model.n_blocks, dtype=torch.float64)
        self._sum_lam = torch.zeros(self.n_tasks, dtype=torch.float64)
        self._assign_counts = torch.zeros(self.n_tasks, K, dtype=torch.float64)

    def record(self) -> None:
        """Add the current state to the posterior summary (call on kept steps)."""
        m = self.model
        self._draw_phi(self.temperature)
        v = self.phi - m.center
        self._n_records += 1
        self._sum_phi += v
        self._sum_phi_sq += v.square()
        self._sum_weights += (self.counts.double() + m.alpha) / (self.n_tasks + m.clusters * m.alpha)
        self._sum_beta2 += self.beta2
        self._sum_lam += self.lam
        self._assign_counts[torch.arange(self.n_tasks), self.z] += 1.0

    def summary(self, variance_floor: float = 1e-12) -> dict[str, torch.Tensor]:
        """Posterior means over the recorded states (the current state if none was recorded).

        ``means`` (K, d) and ``covariances`` (K, d): mean and variance of each centre ``phi_k``;
        ``weights`` (K,): expected cluster probabilities; ``spread`` (B,): mean ``beta_m^2``;
        ``task_variance`` (d,): the spread per coordinate; ``task_scale`` (N,): mean ``lambda_i``;
        ``assignments`` (N, K): how often each training task sat in each cluster.
        """
        if self._n_records == 0:
            self.record()
        sums = (self._sum_phi, self._sum_phi_sq, self._sum_weights, self._sum_beta2)
        return posterior_summary(
            self.model, self._n_records, *sums, self._sum_lam, self._assign_counts, variance_floor
        )

    # -- checkpointing -------------------------------------------------------------------------------
    _STATE = ("theta", "lam", "beta2", "z", "phi", "_visits", "W", "S", "Q", "counts")
    _RECORD = ("_sum_phi", "_sum_phi_sq", "_sum_weights", "_sum_beta2", "_sum_lam", "_assign_counts")

    def _config(self) -> dict[str, Any]:
        return {
            "n_tasks": self.n_tasks,
            "dim": self.dim,
            "preconditioner": self.preconditioner,
            **self.model.settings(),
        }

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "config": self._config(),
            "step_count": self.step_count,
            "seed": self.seed,
            "generator_state": self.generator.get_state().clone(),
            "n_records": self._n_records,
            "moves": [self.proposed_moves, self.accepted_moves],
        }
        for name in (*self._STATE, *self._RECORD):
            state[name.lstrip("_")] = getattr(self, name).clone()
        if self._theta_sq is not None:
            state["theta_sq"] = self._theta_sq.clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["config"] != self._config():
            raise ValueError(
                f"state was saved by a sampler configured as {state['config']}, this one is "
                f"{self._config()}; build the sampler with the same settings before loading"
            )
        self.step_count, self.seed = int(state["step_count"]), int(state["seed"])
        self.generator.set_state(state["generator_state"].clone())
        self._n_records = int(state["n_records"])
        self.proposed_moves, self.accepted_moves = (int(v) for v in state["moves"])
        for name in (*self._STATE, *self._RECORD):
            setattr(self, name, state[name.lstrip("_")].clone())
        self._set_spread(self.beta2)
        if self.preconditioner:
            self._theta_sq = state["theta_sq"].clone()

    def __repr__(self) -> str:
        m = self.model
        return (
            f"StructuredGibbs(n_tasks={self.n_tasks}, dim={self.dim}, clusters={m.clusters}, "
            f"blocks={m.n_blocks}, learn_spread={m.learn_spread}, dof={m.dof}, step={self.step_count})"
        )


def fit_structured_em(
    thetas: torch.Tensor,
    clusters: int,
    block_index: torch.Tensor | None = None,
    *,
    beta: float | None = None,
    dof: float | None = None,
    iterations: int = 100,
    seed: int = 0,
    variance_floor: float = 1e-12,
) -> dict[str, torch.Tensor]:
    """The structured model fitted by EM to adapters that already exist (a zoo; no joint training).

    ``thetas`` (N, d) are treated as the tasks' adapters: a ``clusters``-component mixture with
    centres ``phi_k``, one spread ``beta_m^2`` per block shared by the clusters (``beta`` given: kept
    fixed), and, with ``dof``, Student-t components (EM weights ``u_ik = (nu + d)/(nu + r_ik^2)``).
    Starts from k-means (4 restarts). Returns ``summary()``-like tensors: ``means`` (K, d),
    ``covariances`` (K, d) (the centres' uncertainty, ``beta^2`` over each cluster's effective size),
    ``weights`` (K,), ``spread`` (B,), ``task_variance`` (d,), ``task_scale`` (N,), ``assignments`` (N, K).
    """
    x = thetas.detach().to(torch.float64)
    n, d = x.shape
    if not 1 <= clusters <= n:
        raise ValueError(f"{clusters} clusters need at least as many adapters, got {n}; lower clusters")
    block_index = torch.zeros(d, dtype=torch.long) if block_index is None else block_index.long()
    n_blocks = int(block_index.max()) + 1
    sizes = torch.bincount(block_index, minlength=n_blocks).to(torch.float64)
    labels, centres = kmeans(x, clusters, n_init=4, generator=torch.Generator().manual_seed(seed))
    resp = torch.nn.functional.one_hot(labels, clusters).to(torch.float64)
    weights = torch.ones(n, clusters, dtype=torch.float64)  # the t's scale weights u_ik
    if beta is not None:
        spread = torch.full((n_blocks,), float(beta) ** 2, dtype=torch.float64)
    else:
        resid = (x - centres[labels]).square()
        spread = torch.zeros(n_blocks, dtype=torch.float64).index_add_(0, block_index, resid.sum(0)) / (
            n * sizes
        )
        spread = spread.clamp_min(variance_floor)
    for _ in range(iterations):
        inv_var = 1.0 / spread[block_index]  # (d,)
        r2 = torch.stack([((x - centres[k]).square() * inv_var).sum(1) for k in range(clusters)], 1)  # (n, K)
        pi = resp.mean(0).clamp_min(1e-12)
        if dof is None:
            log_joint = torch.log(pi) - 0.5 * r2
        else:
            log_joint = torch.log(pi) - 0.5 * (dof + d) * torch.log1p(r2 / dof)
            weights = (dof + d) / (dof + r2)
        resp = torch.softmax(log_joint, 1)
        w = resp * weights  # (n, K)
        centres = (w.T @ x) / w.sum(0).clamp_min(1e-12)[:, None]
        if beta is None:
            resid = sum((w[:, k : k + 1] * (x - centres[k]).square()).sum(0) for k in range(clusters))
            ss = torch.zeros(n_blocks, dtype=torch.float64).index_add_(0, block_index, resid)
            spread = (ss / (n * sizes)).clamp_min(variance_floor)
    effective = (resp * weights).sum(0).clamp_min(1.0)  # (K,)
    task_variance = spread[block_index]
    return {
        "means": centres.float(),
        "covariances": (task_variance[None, :] / effective[:, None]).float(),
        "weights": resp.mean(0).float(),
        "spread": spread.float(),
        "task_variance": task_variance.float(),
        "task_scale": (resp * weights).sum(1).float(),
        "assignments": resp.float(),
    }
