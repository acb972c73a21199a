"""Diagonal Gaussian and Gaussian-mixture densities, as small pure functions.

Shapes: ``x`` is ``(n, d)``, ``means`` ``(K, d)``, ``variances`` ``(K, d)`` (diagonal covariances),
``log_weights`` ``(K,)``. Sums over ``d`` are accumulated in float64 so that log densities stay
accurate for ``d`` up to 10^6 (where they reach magnitudes of 10^6 and differ by small amounts).
"""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2.0 * math.pi)


def diag_gaussian_log_prob(x: torch.Tensor, means: torch.Tensor, variances: torch.Tensor) -> torch.Tensor:
    """``log N(x_n; mu_k, diag(var_k))`` for every row and component.

    Args:
        x: ``(n, d)``. means, variances: ``(K, d)``.
    Returns:
        ``(n, K)`` float64 log densities.
    """
    x64 = x.to(torch.float64)
    out = torch.empty(x.shape[0], means.shape[0], dtype=torch.float64, device=x.device)
    for k in range(means.shape[0]):  # one component at a time keeps memory at O(n d)
        var = variances[k].to(torch.float64)
        sq = (x64 - means[k].to(torch.float64)).square_().div_(var)  # (n, d)
        out[:, k] = -0.5 * (sq.sum(dim=1) + torch.log(var).sum() + x.shape[1] * LOG_2PI)
    return out


def gmm_log_joint(
    x: torch.Tensor, log_weights: torch.Tensor, means: torch.Tensor, variances: torch.Tensor
) -> torch.Tensor:
    """``log alpha_k + log N(x_n; mu_k, var_k)``, shape ``(n, K)`` (float64)."""
    return diag_gaussian_log_prob(x, means, variances) + log_weights.to(torch.float64)


def gmm_log_prob(
    x: torch.Tensor, log_weights: torch.Tensor, means: torch.Tensor, variances: torch.Tensor
) -> torch.Tensor:
    """Mixture log density ``log sum_k alpha_k N(x_n; mu_k, var_k)``, shape ``(n,)`` (float64)."""
    return torch.logsumexp(gmm_log_joint(x, log_weights, means, variances), dim=1)


def gmm_responsibilities(
    x: torch.Tensor, log_weights: torch.Tensor, means: torch.Tensor, variances: torch.Tensor
) -> torch.Tensor:
    """Posterior component probabilities ``q_nk``, shape ``(n, K)`` (float64, rows sum to 1)."""
    log_joint = gmm_log_joint(x, log_weights, means, variances)
    return torch.softmax(log_joint, dim=1)


def gmm_grad_log_prob(
    x: torch.Tensor, log_weights: torch.Tensor, means: torch.Tensor, variances: torch.Tensor
) -> torch.Tensor:
    """``d/dx log sum_k alpha_k N(x; mu_k, var_k) = sum_k q_k(x) (mu_k - x) / var_k``.

    Returns ``(n, d)`` in the dtype of ``x``.
    """
    resp = gmm_responsibilities(x, log_weights, means, variances).to(x.dtype)  # (n, K)
    grad = torch.zeros_like(x)
    for k in range(means.shape[0]):
        grad.add_(resp[:, k : k + 1] * (means[k] - x) / variances[k])
    return grad


def diag_student_t_log_prob(
    x: torch.Tensor, means: torch.Tensor, scales: torch.Tensor, dof: float
) -> torch.Tensor:
    """``log t_nu(x_n; mu_k, diag(scale_k))``, the multivariate Student-t with ``nu = dof``, ``(n, K)`` float64.

    ``scales`` are the diagonal of the scale matrix (the variances of the Gaussian it mixes over).
    """
    x64, d = x.to(torch.float64), x.shape[1]
    out = torch.empty(x.shape[0], means.shape[0], dtype=torch.float64, device=x.device)
    const = math.lgamma((dof + d) / 2) - math.lgamma(dof / 2) - 0.5 * d * math.log(dof * math.pi)
    for k in range(means.shape[0]):
        scale = scales[k].to(torch.float64)
        r2 = (x64 - means[k].to(torch.float64)).square_().div_(scale).sum(dim=1)
        out[:, k] = const - 0.5 * torch.log(scale).sum() - 0.5 * (dof + d) * torch.log1p(r2 / dof)
    return out


def mixture_log_joint(
    x: torch.Tensor,
    log_weights: torch.Tensor,
    means: torch.Tensor,
    variances: torch.Tensor,
    dof: float | None = None,
) -> torch.Tensor:
    """``log alpha_k + log f_k(x_n)`` with Gaussian (``dof=None``) or Student-t components, ``(n, K)``."""
    if dof is None:
        return gmm_log_joint(x, log_weights, means, variances)
    return diag_student_t_log_prob(x, means, variances, dof) + log_weights.to(torch.float64)


def mixture_grad_log_prob(
    x: torch.Tensor,
    log_weights: torch.Tensor,
    means: torch.Tensor,
    variances: torch.Tensor,
    dof: float | None = None,
) -> torch.Tensor:
    """``d/dx log sum_k alpha_k f_k(x)``; a Student-t component's term is the Gaussian one times
    ``(nu + d) / (nu + r_k^2)`` (the posterior mean of its scale variable), ``(n, d)`` in ``x``'s dtype."""
    if dof is None:
        return gmm_grad_log_prob(x, log_weights, means, variances)
    log_joint = mixture_log_joint(x, log_weights, means, variances, dof)
    resp = torch.softmax(log_joint, dim=1)  # (n, K)
    d = x.shape[1]
    grad = torch.zeros_like(x)
    for k in range(means.shape[0]):
        diff = means[k].to(x) - x
        r2 = (diff.to(torch.float64).square() / variances[k].to(torch.float64)).sum(1)
        weight = resp[:, k] * (dof + d) / (dof + r2)  # (n,)
        grad.add_(weight.to(x.dtype)[:, None] * diff / variances[k].to(x))
    return grad
