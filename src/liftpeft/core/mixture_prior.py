"""The test-time prior and adaptation to a new task (SPEC section 4).

The learned mixture over ``phi`` becomes a prior over a new task's adapter by convolving each
component with the task-level noise ``N(0, beta^2 I)``:

    p(theta*) = sum_j alpha_j N(theta*; mu_j, Sigma_j + beta^2 I)

``adapt`` samples (SGLD) or maximises (MAP) ``log p(theta*) + log p(D*|theta*)`` starting from the best
component mean and keeps the last ``M`` iterates, whose average predictive gives a spread.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from liftpeft.core.gaussian import mixture_grad_log_prob, mixture_log_joint
from liftpeft.core.gibbs import NonFiniteError
from liftpeft.core.sgld import check_step_size, gain_cap, langevin_kernel, recommended_step_size


class FittedMixture(Protocol):
    weights_: torch.Tensor
    means_: torch.Tensor
    covariances_: torch.Tensor


class MixturePrior:
    """``sum_j alpha_j f(theta; mu_j, Sigma_j + beta^2)`` with diagonal ``Sigma_j``; ``f`` is Gaussian, or a
    Student-t with ``dof`` degrees of freedom (the structured prior's heavy tails).

    Args:
        mixture: a fitted mixture exposing ``weights_`` (K,), ``means_`` (K, d), ``covariances_`` (K, d).
        beta: the task-level standard deviation of the hierarchical prior.
        task_variance: ``(d,)`` learned task spread per coordinate; replaces ``beta^2`` when given.
        dof: Student-t degrees of freedom (``None``: Gaussian components).
    """

    def __init__(
        self,
        mixture: FittedMixture,
        beta: float,
        task_variance: torch.Tensor | None = None,
        dof: float | None = None,
    ) -> None:
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if dof is not None and not dof > 0:
            raise ValueError(f"dof must be > 0 or None, got {dof}")
        self.beta = float(beta)
        self.dof = None if dof is None else float(dof)
        self.weights = mixture.weights_.detach().to(torch.float64).clone()
        self.means = mixture.means_.detach().clone()
        spread = beta**2 if task_variance is None else task_variance.detach().to(self.means.dtype)
        self.variances = mixture.covariances_.detach() + spread
        if self.means.dim() != 2 or self.variances.shape != self.means.shape:
            raise ValueError("mixture means_ and covariances_ (and task_variance) must fit (K, d)")
        self._log_weights = self.weights.log()

    def to(self, device: str | torch.device) -> MixturePrior:
        """The same prior with its tensors on ``device`` (a copy; ``self`` is unchanged)."""
        out = copy.copy(self)
        out.weights, out.means = self.weights.to(device), self.means.to(device)
        out.variances, out._log_weights = self.variances.to(device), self._log_weights.to(device)
        return out

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def curvature(self) -> float:
        """Largest curvature of ``-log p`` within a component: ``1 / min(Sigma + beta^2)`` (a Student-t's
        is at most ``(nu + d) / nu`` times that, at its centre)."""
        scale = 1.0 if self.dof is None else (self.dof + self.dim) / self.dof
        return float(scale / self.variances.min())

    def _rows(self, theta: torch.Tensor) -> tuple[torch.Tensor, bool]:
        if theta.shape[-1] != self.dim:
            raise ValueError(f"theta has dimension {theta.shape[-1]}, the prior has {self.dim}")
        return (theta[None], True) if theta.dim() == 1 else (theta, False)

    def log_prob(self, theta: torch.Tensor) -> torch.Tensor:
        """``log p(theta)``: ``(d,)`` -> scalar, ``(n, d)`` -> ``(n,)`` (float64)."""
        rows, single = self._rows(theta)
        joint = mixture_log_joint(rows, self._log_weights, self.means, self.variances, self.dof)
        out = torch.logsumexp(joint, dim=1)
        return out[0] if single else out

    def responsibilities(self, theta: torch.Tensor) -> torch.Tensor:
        """Posterior probability of each component given ``theta``: ``(d,)`` -> ``(K,)``, ``(n, d)`` -> ``(n, K)``."""
        rows, single = self._rows(theta)
        out = torch.softmax(
            mixture_log_joint(rows, self._log_weights, self.means, self.variances, self.dof), 1
        )
        return out[0] if single else out

    def grad_log_prob(self, theta: torch.Tensor) -> torch.Tensor:
        """``d/dtheta log p(theta)``, same shape and dtype as ``theta``."""
        rows, single = self._rows(theta)
        out = mixture_grad_log_prob(
            rows, self._log_weights, self.means.to(rows), self.variances.to(rows), self.dof
        )
        return out[0] if single else out

    def best_component(self, loss_fn: Callable[[torch.Tensor], float] | None = None) -> int:
        """Component to start from: lowest ``loss_fn(mu_j)`` if given, else the largest weight."""
        if loss_fn is None:
            return int(self.weights.argmax())
        losses = [float(loss_fn(self.means[j].clone())) for j in range(self.n_components)]
        return int(torch.tensor(losses).argmin())


@dataclass
class AdaptResult:
    """Outcome of test-time adaptation.

    ``theta`` is the last iterate (the paper's prediction); ``samples`` the last ``M`` iterates
    ``(M, d)`` for an averaged predictive; ``init_component`` the mixture component started from.
    """

    theta: torch.Tensor
    samples: torch.Tensor
    init_component: int
    config: dict[str, Any]
    report: dict[str, Any] = field(default_factory=dict)  # what the caller adds (e.g. responsibilities)


def adapt(
    prior: MixturePrior,
    grad_log_lik: Callable[[torch.Tensor], torch.Tensor],
    *,
    steps: int,
    step_size: float,
    method: str = "sgld",
    keep_last: int = 1,
    temperature: float = 1.0,
    init: torch.Tensor | None = None,
    loss_fn: Callable[[torch.Tensor], float] | None = None,
    seed: int = 0,
    preconditioner: str | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
    component: int | None = None,
    cap_gain: bool = False,
) -> AdaptResult:
    """Adapt a new task's adapter under the mixture prior.

    Args:
        prior: the test-time mixture prior.
        grad_log_lik: ``theta (d,) -> d/dtheta log p(D*|theta)`` (a minibatch estimate is fine).
        steps: number of SGLD / gradient steps.
        step_size: step size ``eta``; refused if it provably diverges on the prior's stiffest component.
        method: ``"sgld"`` (sample, temperature ``temperature``) or ``"map"`` (temperature 0).
        keep_last: number ``M`` of final iterates to keep.
        init: starting point; default is the mean of ``component``, or of ``prior.best_component(loss_fn)``.
        component: the mixture component to start from (ignored if ``init`` is given).
        cap_gain: with ``preconditioner="rmsprop"``, cap its gain at ``gain_cap(step_size, curvature)``
            of the prior's stiffest component (see ``core.sgld.psgld_step``).
        seed: seed of the Langevin noise.
        preconditioner: ``None`` or ``"rmsprop"`` (pSGLD).
        callback: called as ``callback(step, theta)`` after each step (progress, logging).
    """
    if method not in ("sgld", "map"):
        raise ValueError(f"method must be 'sgld' or 'map', got {method!r}")
    if steps < 0 or keep_last < 1:
        raise ValueError(f"steps must be >= 0 and keep_last >= 1, got steps={steps}, keep_last={keep_last}")
    temp = 0.0 if method == "map" else float(temperature)
    if preconditioner is None:
        check_step_size(
            step_size,
            prior.curvature,
            "the new task's adapter (the stiffest prior component has variance "
            f"{1.0 / prior.curvature:.3g} = Sigma_j + beta^2)",
            f"Lower step_size below {recommended_step_size(prior.curvature):.3g} or use preconditioner='rmsprop'.",
        )
    elif preconditioner != "rmsprop":
        raise ValueError(f"preconditioner must be None or 'rmsprop', got {preconditioner!r}")
    if init is not None:
        component = -1
    else:
        if component is None:
            component = prior.best_component(loss_fn)
        elif not 0 <= component < prior.n_components:
            raise ValueError(f"component must be in [0, {prior.n_components}), got {component}")
        init = prior.means[component]
    theta = init.detach().to(torch.float32 if init.dtype == torch.float64 else init.dtype).clone()
    generator = torch.Generator(device=theta.device).manual_seed(int(seed))
    max_gain = gain_cap(step_size, prior.curvature) if cap_gain and preconditioner else None
    kernel = langevin_kernel(preconditioner, max_gain=max_gain)
    state = kernel.init(theta)
    kept: list[torch.Tensor] = []
    for step in range(steps):
        grad = prior.grad_log_prob(theta) + grad_log_lik(theta.clone()).to(theta)
        if not torch.isfinite(grad).all():
            raise NonFiniteError(f"non-finite gradient at adaptation step {step}; lower the step size")
        theta, state = kernel.step(theta, grad, state, step_size, generator, temp)
        if step >= steps - keep_last:
            kept.append(theta.clone())
        if callback is not None:
            callback(step, theta)
    if not kept:
        kept = [theta.clone()]
    config = {
        "steps": steps,
        "step_size": step_size,
        "method": method,
        "keep_last": keep_last,
        "temperature": temp,
        "seed": seed,
        "preconditioner": preconditioner,
        "init_component": component,
    }
    return AdaptResult(theta=theta, samples=torch.stack(kept), init_component=component, config=config)
