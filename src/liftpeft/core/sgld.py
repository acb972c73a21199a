"""Stochastic gradient Langevin dynamics kernels as small pure functions.

Each kernel takes the current position, a gradient of the log density *to ascend*, a step size
``eta``, an explicit ``torch.Generator`` and a ``temperature`` ``T``, and returns the new position:

    SGLD  (Welling & Teh 2011):  x' = x + (eta/2) g + sqrt(eta T) z,            z ~ N(0, I)
    pSGLD (Li et al. 2016):      V' = a V + (1-a) g^2,  G = 1 / (eps + sqrt(V' / (1 - a^t)))
                                 x' = x + (eta/2) G g + sqrt(eta T G) z

At ``T = 1`` SGLD targets the density whose gradient is ``g``; at ``T`` it targets that density to
the power ``1/T``; at ``T = 0`` it is gradient ascent. pSGLD omits the small ``Gamma`` correction term
of Li et al., as is usual. Nothing here mutates its inputs.

Stability. For a Gaussian term of curvature ``lam`` (``-log p = lam x^2 / 2``) the SGLD recursion is
``x' = (1 - eta lam / 2) x + sqrt(eta) z``: it diverges when ``eta >= 4 / lam`` and otherwise has
stationary variance ``1 / (lam (1 - eta lam / 4))``, i.e. inflated by ``1 / (1 - eta lam / 4)``.
``check_step_size`` refuses the first case and warns about the second.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import torch


def _check_temperature(temperature: float) -> None:
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be finite and >= 0, got {temperature!r}")


def _fits(out: torch.Tensor, other: torch.Tensor) -> bool:
    """Whether ``out op other`` has ``out``'s shape and dtype, so that it can be written into ``out``."""
    same_shape = out.shape == torch.broadcast_shapes(out.shape, other.shape)
    return same_shape and out.dtype == torch.result_type(out, other)


def _add_into(out: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``out + other``, in place in ``out`` (a temporary of the caller) when shapes and dtypes allow.

    Addition and multiplication are commutative in IEEE arithmetic, so these give bit for bit what
    ``other + out`` / ``other * out`` give.
    """
    return out.add_(other) if _fits(out, other) else out + other


def _mul_into(out: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``out * other``, in place in ``out`` when shapes and dtypes allow (see ``_add_into``)."""
    return out.mul_(other) if _fits(out, other) else out * other


def langevin_noise(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise with the shape, dtype and device of ``like``."""
    return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)


def sgld_step(
    position: torch.Tensor,
    grad: torch.Tensor,
    step_size: float,
    generator: torch.Generator | None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """One SGLD step ``x + (eta/2) g + sqrt(eta T) z`` (any shape; ``grad`` like ``position``)."""
    _check_temperature(temperature)
    new = _add_into(grad * (0.5 * step_size), position)
    if temperature > 0:
        noise = langevin_noise(position, generator).mul_(math.sqrt(step_size * temperature))
        new = _add_into(new, noise)
    return new


class PSGLDState(NamedTuple):
    """RMSprop statistics of pSGLD: the running average of squared gradients (shape of the position)
    and the number of averaged steps (for the bias correction ``V / (1 - a^count)``)."""

    square_avg: torch.Tensor
    count: int | torch.Tensor = 0  # an int, or a tensor broadcastable against square_avg


def psgld_init(position: torch.Tensor) -> PSGLDState:
    return PSGLDState(square_avg=torch.zeros_like(position), count=0)


def psgld_step(
    position: torch.Tensor,
    grad: torch.Tensor,
    state: PSGLDState,
    step_size: float,
    generator: torch.Generator | None,
    temperature: float = 1.0,
    alpha: float = 0.99,
    eps: float = 1e-5,
    max_gain: float | None = None,
) -> tuple[torch.Tensor, PSGLDState]:
    """One RMSprop-preconditioned SGLD step; returns ``(new_position, new_state)``.

    ``max_gain`` caps ``G``. Uncapped, ``G`` reaches ``1/eps`` where the gradient is (near) zero, e.g.
    along LoRA's A while B = 0: there the step ``eta G`` overshoots any prior and the noise
    ``sqrt(eta G)`` throws the chain far out (``gain_cap`` gives the cap that keeps a prior-only
    direction stable)."""
    _check_temperature(temperature)
    # Each line is one elementwise operation of the formula, in the formula's order; results go into
    # fresh buffers that are then updated in place (3 large temporaries instead of ~12).
    square_avg = _add_into(state.square_avg * alpha, grad.square().mul_(1.0 - alpha))  # V'
    count = state.count + 1
    # Bias-corrected average (as in Adam): without it the first steps see V ~ (1-a) g^2 and take a
    # preconditioner 1/sqrt(1-a) = 10x too large, which throws the chain far out at the start.
    precond = square_avg / (1.0 - torch.as_tensor(alpha, dtype=square_avg.dtype) ** count)
    precond.sqrt_().add_(eps).reciprocal_()  # G = 1 / (eps + sqrt(V' / (1 - a^t))), diagonal
    if max_gain is not None:
        precond.clamp_(max=max_gain)
    new = _add_into(_mul_into(precond * (0.5 * step_size), grad), position)
    if temperature > 0:
        scale = precond.mul_(step_size * temperature).sqrt_()  # sqrt(eta T G), reusing G's buffer
        new = _add_into(new, _mul_into(scale, langevin_noise(position, generator)))
    return new, PSGLDState(square_avg, count)


PRECONDITIONERS = (None, "rmsprop")


class LangevinKernel(NamedTuple):
    """An ``init`` / ``step`` pair, chosen once: ``init(position) -> state`` and
    ``step(position, grad, state, step_size, generator, temperature) -> (new_position, new_state)``.
    Plain SGLD's state is ``None``; pSGLD's a ``PSGLDState``. Callers never branch on the kind."""

    init: Callable[[torch.Tensor], Any]
    step: Callable[..., tuple[torch.Tensor, Any]]


def langevin_kernel(
    preconditioner: str | None, alpha: float = 0.99, eps: float = 1e-5, max_gain: float | None = None
) -> LangevinKernel:
    """SGLD (``preconditioner=None``) or RMSprop-preconditioned SGLD (``"rmsprop"``, its gain capped at
    ``max_gain`` if given)."""
    if preconditioner is None:

        def sgld(position, grad, state, step_size, generator, temperature=1.0):
            return sgld_step(position, grad, step_size, generator, temperature), None

        return LangevinKernel(lambda position: None, sgld)
    if preconditioner == "rmsprop":

        def psgld(position, grad, state, step_size, generator, temperature=1.0):
            return psgld_step(position, grad, state, step_size, generator, temperature, alpha, eps, max_gain)

        return LangevinKernel(psgld_init, psgld)
    raise ValueError(f"preconditioner must be None or 'rmsprop', got {preconditioner!r}")


GAIN_CAP_STEP = 0.4  # eta G lam at the cap: a prior-only direction's variance is inflated by <= 1.11


def gain_cap(step_size: float, curvature: float) -> float:
    """The pSGLD gain at which a direction constrained only by a Gaussian prior of this curvature
    takes the step ``eta G lam = 0.4``: stable (divergence at 4) and its variance inflated by
    ``1 / (1 - 0.4 / 4) = 1.11``."""
    if not (step_size > 0 and curvature > 0):
        raise ValueError(f"need step_size > 0 and curvature > 0, got {step_size}, {curvature}")
    return GAIN_CAP_STEP / (step_size * curvature)


def max_stable_step_size(curvature: float) -> float:
    """Largest step size for which SGLD on a Gaussian of this curvature does not diverge: ``4 / lam``."""
    return 4.0 / curvature


def recommended_step_size(curvature: float, max_inflation: float = 1.1) -> float:
    """Largest step size whose stationary variance inflation stays at ``max_inflation``."""
    return max_stable_step_size(curvature) * (1.0 - 1.0 / max_inflation)


def variance_inflation(step_size: float, curvature: float) -> float:
    """Factor by which SGLD's stationary variance exceeds the target's: ``1 / (1 - eta lam / 4)``."""
    ratio = step_size * curvature / 4.0
    return math.inf if ratio >= 1 else 1.0 / (1.0 - ratio)


def check_step_size(
    step_size: float, curvature: float, what: str, advice: str, warn_inflation: float = 1.1
) -> None:
    """Refuse a step size that provably diverges on a Gaussian term of ``curvature``; warn if biased.

    Args:
        step_size: the SGLD step size ``eta``.
        curvature: curvature ``lam`` of the stiffest Gaussian term the step sees.
        what: what is being stepped and why it is stiff (goes into the message).
        advice: what to change (goes into the message).
        warn_inflation: warn when the stationary variance is inflated by more than this factor.
    """
    if not (step_size > 0 and math.isfinite(step_size)):
        raise ValueError(f"step_size must be a positive finite number, got {step_size!r}")
    limit = max_stable_step_size(curvature)
    if step_size >= limit:
        raise ValueError(
            f"step_size={step_size:g} makes SGLD diverge on {what}: a Gaussian term of curvature "
            f"{curvature:g} is unstable for step sizes >= 4/curvature = {limit:g}. {advice}"
        )
    inflation = variance_inflation(step_size, curvature)
    if inflation > warn_inflation:
        warnings.warn(
            f"step_size={step_size:g} inflates the sampled variance of {what} by a factor of "
            f"{inflation:.2f} (curvature {curvature:g}); a step below "
            f"{recommended_step_size(curvature, warn_inflation):.3g} keeps it under {warn_inflation:g}. "
            f"{advice}",
            stacklevel=3,
        )
