"""The hierarchical Gaussian prior of LiFT (SPEC section 1).

    p(phi)          = N(phi; c, sigma^2 I)
    p(theta_i | phi) = N(theta_i; phi, beta^2 I)

``phi`` is the shared latent adapter, ``theta_i`` the adapter of task ``i``; both are flat vectors of
length ``d``. ``c`` (the *center*) is the PEFT initialisation (LoRA: A random, B zero); it defaults
to zero for plain-tensor use.
"""

from __future__ import annotations

import math

import torch


class HierarchicalPrior:
    """Log densities and gradients of ``p(phi)`` and ``p(theta | phi)``.

    Args:
        sigma: standard deviation of ``p(phi)`` around the center (paper: 0.01).
        beta: standard deviation of ``p(theta_i | phi)`` (paper: 0.01).
        center: ``(d,)`` mean of ``p(phi)``; ``None`` means zero.

    Shapes: ``phi`` is ``(d,)``; ``theta`` is ``(d,)`` or ``(n, d)`` (one row per task); log densities
    of a batch of thetas have shape ``(n,)``.
    """

    def __init__(self, sigma: float, beta: float, center: torch.Tensor | None = None) -> None:
        for name, value in (("sigma", sigma), ("beta", beta)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if center is not None and center.dim() != 1:
            raise ValueError(
                f"center must be a 1-D tensor (the flat adapter), got shape {tuple(center.shape)}"
            )
        self.sigma = float(sigma)
        self.beta = float(beta)
        self.center = center

    # -- p(phi) ---------------------------------------------------------------------------------
    def _center_like(self, phi: torch.Tensor) -> torch.Tensor | float:
        if self.center is None:
            return 0.0
        if self.center.shape[-1] != phi.shape[-1]:
            raise ValueError(f"center has dimension {self.center.shape[-1]} but phi has {phi.shape[-1]}")
        return self.center.to(device=phi.device, dtype=phi.dtype)

    def log_prob_phi(self, phi: torch.Tensor) -> torch.Tensor:
        """``log N(phi; c, sigma^2 I)`` (scalar)."""
        diff = phi - self._center_like(phi)
        d = phi.shape[-1]
        return -0.5 * (diff.square().sum(-1) / self.sigma**2 + d * math.log(2 * math.pi * self.sigma**2))

    def grad_log_prob_phi(self, phi: torch.Tensor) -> torch.Tensor:
        """``-(phi - c) / sigma^2``, shape ``(d,)``."""
        return (self._center_like(phi) - phi) / self.sigma**2

    # -- p(theta | phi) -------------------------------------------------------------------------
    def log_prob_theta(self, theta: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        """``log N(theta; phi, beta^2 I)``; ``theta`` ``(d,)`` -> scalar, ``(n, d)`` -> ``(n,)``."""
        d = theta.shape[-1]
        return -0.5 * (
            (theta - phi).square().sum(-1) / self.beta**2 + d * math.log(2 * math.pi * self.beta**2)
        )

    def grad_theta_log_prob_theta(self, theta: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        """``d/dtheta log p(theta | phi) = -(theta - phi) / beta^2`` (shape of ``theta``)."""
        return (phi - theta) / self.beta**2

    def grad_phi_log_prob_theta(self, theta: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        """``d/dphi log p(theta | phi) = (theta - phi) / beta^2`` (shape of ``theta``)."""
        return (theta - phi) / self.beta**2

    # -- conditional of phi ---------------------------------------------------------------------
    def phi_conditional(self, theta_sum: torch.Tensor, n_tasks: int) -> tuple[torch.Tensor, float]:
        """Gaussian conditional ``p(phi | theta_1..N) = N(mean, var I)``.

        ``precision = 1/sigma^2 + N/beta^2``; ``mean = (c/sigma^2 + S/beta^2) / precision`` where
        ``S = sum_i theta_i`` (``theta_sum``, shape ``(d,)``). Returns ``(mean (d,), var)``.
        """
        precision = 1.0 / self.sigma**2 + n_tasks / self.beta**2
        mean = (self._center_like(theta_sum) / self.sigma**2 + theta_sum / self.beta**2) / precision
        if not isinstance(mean, torch.Tensor):  # center is zero and theta_sum a tensor: cannot happen
            raise TypeError("theta_sum must be a tensor")
        return mean, 1.0 / precision

    # -- curvatures (used to refuse unstable step sizes) ----------------------------------------
    @property
    def theta_curvature(self) -> float:
        """Curvature of ``-log p(theta | phi)`` in ``theta``: ``1/beta^2``."""
        return 1.0 / self.beta**2

    def phi_curvature(self, n_tasks: int) -> float:
        """Curvature of ``-log p(phi) - sum_i log p(theta_i | phi)`` in ``phi``: ``1/sigma^2 + N/beta^2``."""
        return 1.0 / self.sigma**2 + n_tasks / self.beta**2

    def __repr__(self) -> str:
        center = "0" if self.center is None else f"tensor(d={self.center.shape[0]})"
        return f"HierarchicalPrior(sigma={self.sigma}, beta={self.beta}, center={center})"
