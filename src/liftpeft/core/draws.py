"""Random draws that take an explicit ``torch.Generator`` (so a checkpointed chain resumes exactly).

``torch.distributions`` draws Gamma variates from the global generator only; these do not.
"""

from __future__ import annotations

import torch


def gamma(shape: torch.Tensor, generator: torch.Generator, max_rounds: int = 100) -> torch.Tensor:
    """Gamma(``shape``, rate 1) variates, one per element of ``shape`` (float64, all > 0).

    Marsaglia and Tsang's squeeze-free rejection method for shape >= 1; a shape below 1 is boosted,
    ``Gamma(a) = Gamma(a + 1) * U^(1/a)``. Each round accepts a draw with probability > 0.95.
    """
    a = torch.as_tensor(shape, dtype=torch.float64).reshape(-1)
    if not bool((a > 0).all()) or not bool(torch.isfinite(a).all()):
        raise ValueError("gamma shapes must be finite and > 0")
    small = a < 1
    a_big = torch.where(small, a + 1, a)
    d = a_big - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    out = torch.empty_like(a)
    todo = torch.ones_like(a, dtype=torch.bool)
    for _ in range(max_rounds):
        n = int(todo.sum())
        if n == 0:
            break
        x = torch.randn(n, dtype=torch.float64, generator=generator)
        u = torch.rand(n, dtype=torch.float64, generator=generator)
        dt, ct = d[todo], c[todo]
        v = (1.0 + ct * x) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * x.square() + dt - dt * v + dt * torch.log(v.clamp_min(1e-300)))
        idx = todo.nonzero().squeeze(1)
        out[idx[ok]] = (dt * v)[ok]
        todo[idx[ok]] = False
    if bool(todo.any()):  # probability < 0.05^100: cannot happen in practice
        raise RuntimeError("gamma rejection sampler did not accept; report this as a bug")
    if bool(small.any()):
        u = torch.rand(int(small.sum()), dtype=torch.float64, generator=generator)
        out[small] = out[small] * u.pow(1.0 / a[small])
    return out.reshape(torch.as_tensor(shape).shape).clamp_min(torch.finfo(torch.float64).tiny)


def inverse_gamma(shape: torch.Tensor, rate: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """InvGamma(``shape``, ``rate``) variates (density ∝ x^(-shape-1) exp(-rate/x)), float64."""
    shape = torch.as_tensor(shape, dtype=torch.float64)
    rate = torch.as_tensor(rate, dtype=torch.float64)
    shape, rate = torch.broadcast_tensors(shape, rate)
    return rate / gamma(shape.contiguous(), generator)


def categorical(log_weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row of ``log_weights`` ``(n, K)`` (unnormalised log probabilities), shape ``(n,)``."""
    probs = torch.softmax(log_weights.to(torch.float64), dim=-1)
    return torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator).reshape(
        log_weights.shape[:-1]
    )
