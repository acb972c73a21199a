"""MCMC diagnostics of the phi chain: effective sample size and split R-hat (numpy).

``effective_sample_size`` sums the autocorrelation over Geyer's initial positive sequence (pairs of
lags, summed while positive and made monotone). ``split_rhat`` is the potential scale reduction of
Gelman et al. (BDA3) on split chains: several chains are each cut in two halves; a single chain is
cut into ``n_segments`` pieces, so a chain that still drifts shows an R-hat above 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _autocorrelation(x: np.ndarray) -> np.ndarray:
    n = len(x)
    centred = x - x.mean()
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(centred, size)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), size)[:n] / n
    return acov / acov[0] if acov[0] > 0 else np.zeros(n)


def effective_sample_size(x: Sequence[float]) -> float:
    """ESS of one chain ``x`` (n,): ``n / tau`` with ``tau = -1 + 2 sum_k (rho_2k + rho_2k+1)`` over
    Geyer's initial positive, monotone sequence."""
    x = np.asarray(x, dtype=float)
    n = len(x)
    if n < 4 or np.allclose(x, x[0]):
        return float(n)
    rho = _autocorrelation(x)
    m = (n - 1) // 2
    pair_sums = rho[0 : 2 * m : 2] + rho[1 : 2 * m : 2]  # Gamma_k = rho_{2k} + rho_{2k+1}
    total = 0.0
    previous = np.inf
    for gamma in pair_sums:
        if gamma <= 0:
            break
        gamma = min(gamma, previous)  # initial monotone sequence
        total += gamma
        previous = gamma
    tau = max(-1.0 + 2.0 * total, 1.0 / n)  # Geyer: tau = -1 + 2 sum_k Gamma_k
    return float(n / tau)


def split_rhat(chains: Sequence[Sequence[float]] | Sequence[float], n_segments: int = 2) -> float:
    """Split R-hat of one chain (cut into ``n_segments`` pieces) or several (each cut in two)."""
    arr = np.asarray(chains, dtype=float)
    if arr.ndim == 1:
        pieces = np.array_split(arr, n_segments)
    else:
        pieces = [half for chain in arr for half in np.array_split(chain, 2)]
    m = min(len(p) for p in pieces)
    if m < 2:
        return float("nan")
    pieces = np.stack([p[:m] for p in pieces])  # (chains, m)
    within = pieces.var(axis=1, ddof=1).mean()
    between = m * pieces.mean(axis=1).var(ddof=1)
    if within <= 0:
        return float("nan")
    var_plus = (m - 1) / m * within + between / m
    return float(np.sqrt(var_plus / within))
