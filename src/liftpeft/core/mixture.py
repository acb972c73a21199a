"""Online-EM Gaussian mixture with diagonal covariances (SPEC section 3): the learned prior of LiFT.

For each new sample ``x`` (in the order given):

    E:  q_j = alpha_j N(x; mu_j, Sigma_j) / sum_k alpha_k N(x; mu_k, Sigma_k)      (in log space)
    M:  n_j' = n_j + q_j;  mu_j' = (n_j mu_j + q_j x) / n_j';  alpha = n' / sum_k n_k'
        Sigma_j' = (n_j S_j + q_j x^2)/n_j' - mu_j'^2   (floored at ``reg_covar``)

The second moment is tracked in centred form (Welford: ``M2_j' = M2_j + q_j (x - mu_j)(x - mu_j')``,
``Sigma_j = M2_j / n_j``), which is the same update as the ``S_j`` recursion but without its
cancellation error, so that one component reproduces the running mean and population variance.

Initialisation. The first ``buffer_size`` samples are buffered and clustered by k-means++ with
``n_init`` restarts; each cluster gives a component with count ``n_j`` = its size, mean and variance =
its sample moments (a single-member cluster takes the pooled within-cluster variance instead of zero).
The online updates then continue with the samples after the buffer. This avoids two measured traps:
counts near zero let the first sample overwrite a component and collapse its variance to the floor,
and a single broad initial variance lets one component swallow several clusters. With
``n_components=1`` the result equals the running moments of all samples exactly.
"""

from __future__ import annotations

from typing import Any

import torch

from liftpeft.core.gaussian import gmm_grad_log_prob, gmm_log_prob, gmm_responsibilities
from liftpeft.core.kmeans import kmeans


class NotFittedError(RuntimeError):
    """The mixture has not been initialised yet."""


class OnlineGaussianMixture:
    """Diagonal Gaussian mixture fitted one sample at a time by online EM.

    Args:
        n_components: number of components ``K``.
        reg_covar: floor on every variance.
        random_state: seed for the k-means++ initialisation (and the default of ``sample``).
        buffer_size: number of first samples clustered to initialise (default ``max(20, 10 K)``).
        n_init: k-means++ restarts on the buffer.

    Fitted state (float64): ``weights_`` (K,), ``means_`` (K, d), ``covariances_`` (K, d),
    ``counts_`` (K,), ``n_samples_seen_``.
    """

    def __init__(
        self,
        n_components: int,
        reg_covar: float = 1e-6,
        random_state: int | None = None,
        *,
        buffer_size: int | None = None,
        n_init: int = 5,
    ) -> None:
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        if not reg_covar > 0:
            raise ValueError(f"reg_covar must be > 0, got {reg_covar}")
        buffer_size = max(20, 10 * n_components) if buffer_size is None else int(buffer_size)
        if buffer_size < n_components:
            raise ValueError(f"buffer_size ({buffer_size}) must be >= n_components ({n_components})")
        self.n_components = int(n_components)
        self.reg_covar = float(reg_covar)
        self.random_state = random_state
        self.buffer_size = buffer_size
        self.n_init = int(n_init)
        self._buffer: list[torch.Tensor] = []
        self.counts_: torch.Tensor | None = None
        self.means_: torch.Tensor | None = None
        self._m2: torch.Tensor | None = None
        self.n_samples_seen_ = 0

    # -- fitted quantities ------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return self.means_ is not None

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"the mixture is not initialised: it has buffered {len(self._buffer)} of the "
                f"{self.buffer_size} samples it needs; call partial_fit with more samples, or "
                f"initialize() to initialise from the {len(self._buffer)} buffered so far"
            )

    @property
    def weights_(self) -> torch.Tensor:
        self._require_fitted()
        return self.counts_ / self.counts_.sum()

    @property
    def covariances_(self) -> torch.Tensor:
        self._require_fitted()
        return (self._m2 / self.counts_[:, None]).clamp_min(self.reg_covar)

    @property
    def dim(self) -> int:
        self._require_fitted()
        return self.means_.shape[1]

    # -- fitting ----------------------------------------------------------------------------------
    def partial_fit(self, X: torch.Tensor) -> OnlineGaussianMixture:
        """Process the rows of ``X`` ((n, d) or (d,)) in order."""
        X = torch.as_tensor(X)
        if X.dim() == 1:
            X = X[None]
        if X.dim() != 2:
            raise ValueError(f"X must be (n, d) or (d,), got shape {tuple(X.shape)}")
        if not torch.isfinite(X).all():
            raise ValueError("X holds NaN or inf; the mixture accepts finite samples only")
        start = 0
        if not self.is_fitted:
            if self._buffer and self._buffer[0].shape[0] != X.shape[1]:
                raise ValueError(
                    f"X has dimension {X.shape[1]}, earlier samples had {self._buffer[0].shape[0]}"
                )
            take = min(self.buffer_size - len(self._buffer), X.shape[0])
            self._buffer.extend(X[:take].to(torch.float64).unbind(0))
            start = take
            if len(self._buffer) < self.buffer_size:
                return self
            self.initialize()
        if X.shape[1] != self.means_.shape[1]:
            raise ValueError(f"X has dimension {X.shape[1]}, the mixture has {self.means_.shape[1]}")
        for row in X[start:].to(torch.float64):
            self._update(row)
        return self

    def initialize(self) -> OnlineGaussianMixture:
        """Initialise from the buffered samples now (k-means++ with restarts); needs >= K of them."""
        if self.is_fitted:
            return self
        if len(self._buffer) < self.n_components:
            raise NotFittedError(
                f"cannot initialise {self.n_components} components from {len(self._buffer)} samples; "
                "feed at least n_components samples first"
            )
        buf = torch.stack(self._buffer)  # (B, d)
        generator = torch.Generator().manual_seed(0 if self.random_state is None else int(self.random_state))
        if self.n_components == 1:
            labels = torch.zeros(buf.shape[0], dtype=torch.long)
        else:
            labels, _ = kmeans(buf, self.n_components, self.n_init, generator)
        counts = torch.bincount(labels, minlength=self.n_components).to(torch.float64)
        means = torch.stack([buf[labels == j].mean(0) for j in range(self.n_components)])
        m2 = torch.stack([(buf[labels == j] - means[j]).square().sum(0) for j in range(self.n_components)])
        single = counts < 2
        if single.any():
            if (~single).any():
                pooled = m2[~single].sum(0) / counts[~single].sum()
            else:
                pooled = buf.var(0, unbiased=False)
            m2[single] = pooled * counts[single, None]
        self.counts_, self.means_, self._m2 = counts, means, m2
        self.n_samples_seen_ = buf.shape[0]
        self._buffer = []
        return self

    def _update(self, x: torch.Tensor) -> None:
        """One online E/M step for a single sample ``x`` (d,) float64.

        Components with zero responsibility (the usual case in high dimension, where responsibilities
        are one-hot) are left untouched, which is exactly what their update would do.
        """
        q = self._responsibilities(x[None])[0]  # (K,)
        active = (q > 0).nonzero().squeeze(1)
        q_a = q[active]
        counts = self.counts_[active] + q_a
        delta = x - self.means_[active]  # (A, d)
        means = self.means_[active] + (q_a / counts)[:, None] * delta
        self._m2[active] = self._m2[active] + q_a[:, None] * delta * (x - means)
        self.means_[active] = means
        self.counts_[active] = counts
        self.n_samples_seen_ += 1

    # -- densities --------------------------------------------------------------------------------
    def _responsibilities(self, X: torch.Tensor) -> torch.Tensor:
        return gmm_responsibilities(X, self.weights_.log(), self.means_, self.covariances_)

    def _as_rows(self, X: torch.Tensor) -> torch.Tensor:
        X = torch.as_tensor(X)
        X = X[None] if X.dim() == 1 else X
        if X.shape[-1] != self.dim:
            raise ValueError(f"X has dimension {X.shape[-1]}, the mixture has {self.dim}")
        return X

    def score_samples(self, X: torch.Tensor) -> torch.Tensor:
        """Log density of each row, ``(n,)`` float64."""
        self._require_fitted()
        return gmm_log_prob(self._as_rows(X), self.weights_.log(), self.means_, self.covariances_)

    def predict_proba(self, X: torch.Tensor) -> torch.Tensor:
        """Component responsibilities of each row, ``(n, K)`` float64."""
        self._require_fitted()
        return self._responsibilities(self._as_rows(X))

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        return self.predict_proba(X).argmax(1)

    def grad_log_density(self, X: torch.Tensor) -> torch.Tensor:
        """Gradient of the log density at each row, ``(n, d)`` in the dtype of ``X``."""
        self._require_fitted()
        X = self._as_rows(X)
        return gmm_grad_log_prob(X, self.weights_.log(), self.means_, self.covariances_)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` samples, ``(n, d)`` float64."""
        self._require_fitted()
        if generator is None:
            generator = torch.Generator().manual_seed(
                0 if self.random_state is None else int(self.random_state)
            )
        comps = torch.multinomial(self.weights_, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means_[comps] + self.covariances_[comps].sqrt() * noise

    # -- persistence ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "n_components": self.n_components,
            "reg_covar": self.reg_covar,
            "random_state": self.random_state,
            "buffer_size": self.buffer_size,
            "n_init": self.n_init,
            "n_samples_seen": self.n_samples_seen_,
        }
        if self.is_fitted:
            state.update(counts=self.counts_.clone(), means=self.means_.clone(), m2=self._m2.clone())
        else:
            state["buffer"] = (
                torch.stack(self._buffer) if self._buffer else torch.zeros(0, 0, dtype=torch.float64)
            )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> OnlineGaussianMixture:
        if int(state["n_components"]) != self.n_components:
            raise ValueError(
                f"state holds {state['n_components']} components, this mixture has {self.n_components}"
            )
        self.reg_covar = float(state["reg_covar"])
        self.random_state = state["random_state"]
        self.buffer_size = int(state["buffer_size"])
        self.n_init = int(state["n_init"])
        self.n_samples_seen_ = int(state["n_samples_seen"])
        if "means" in state:
            self.counts_ = state["counts"].to(torch.float64).clone()
            self.means_ = state["means"].to(torch.float64).clone()
            self._m2 = state["m2"].to(torch.float64).clone()
            self._buffer = []
        else:
            self.counts_ = self.means_ = self._m2 = None
            self._buffer = (
                list(state["buffer"].to(torch.float64).unbind(0)) if state["buffer"].numel() else []
            )
        return self

    @classmethod
    def from_params(
        cls,
        weights: torch.Tensor,
        means: torch.Tensor,
        covariances: torch.Tensor,
        counts: torch.Tensor | None = None,
        reg_covar: float = 1e-6,
    ) -> OnlineGaussianMixture:
        """A fitted mixture with the given parameters (counts default to the weights)."""
        mix = cls(means.shape[0], reg_covar=reg_covar)
        counts = weights.to(torch.float64) if counts is None else counts.to(torch.float64)
        mix.counts_ = counts.clone()
        mix.means_ = means.to(torch.float64).clone()
        mix._m2 = covariances.to(torch.float64) * counts[:, None]
        mix.n_samples_seen_ = round(float(counts.sum()))
        return mix

    def __repr__(self) -> str:
        fitted = (
            f"d={self.dim}, seen={self.n_samples_seen_}"
            if self.is_fitted
            else f"buffered={len(self._buffer)}"
        )
        return f"OnlineGaussianMixture(n_components={self.n_components}, {fitted})"
