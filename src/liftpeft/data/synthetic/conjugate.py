"""The conjugate linear-Gaussian task family (SPEC section 8): exact posteriors to check LiFT against.

Generative model, independently in each of the ``d`` coordinates:

    phi      ~ N(c, sigma^2 I)
    theta_i  ~ N(phi, beta^2 I)                      task i = 1..N
    y_ij     ~ N(theta_i, s^2 I)                     example j = 1..n_i of task i

A task's per-example loss is the Gaussian negative log-likelihood
``||theta - y||^2 / (2 s^2) + (d/2) log(2 pi s^2)``, so LiFT's likelihood ``exp(-(n_i/tau) L_i(theta))``
with ``tau = 1`` and its prior with the same ``c``, ``sigma``, ``beta`` *are* this model, and the
posterior LiFT samples is known in closed form. With ``ybar_i`` the mean of task i's ``n_i``
observations (sufficient: ``ybar_i | theta_i ~ N(theta_i, s^2/n_i)``) and ``w_i = 1/(beta^2 + s^2/n_i)``:

    p(phi | D)             = N(m, v),         1/v = 1/sigma^2 + sum_i w_i,  m = v (c/sigma^2 + sum_i w_i ybar_i)
    p(theta* | D)          = N(m, v + beta^2)   (a new task's adapter before seeing its data)
    p(theta* | D, D*)      = N(m*, v*),        1/v* = 1/(v + beta^2) + n*/s^2,  m* = v* (m/(v + beta^2) + n* ybar*/s^2)

For ``n_i = 1`` this is SPEC section 8's ``v = 1/(1/sigma^2 + N/(beta^2 + s^2))``. LiFT's learned prior
with K = 1 should reproduce ``p(theta* | D)``: component mean ``m`` and variance ``v + beta^2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from liftpeft.data.synthetic.base import SyntheticBenchmark, TensorTask, as_rows, task_generator


class IsotropicGaussian(NamedTuple):
    """``N(mean, var I)``: ``mean`` (d,), ``var`` one variance shared by every coordinate."""

    mean: torch.Tensor
    var: float

    @property
    def std(self) -> float:
        return math.sqrt(self.var)


def conjugate_phi_posterior(
    sample_means: torch.Tensor,
    counts: torch.Tensor | int,
    sigma: float,
    beta: float,
    noise: float,
    center: torch.Tensor | float = 0.0,
) -> IsotropicGaussian:
    """``p(phi | D_1..N)`` of the conjugate hierarchy.

    Args:
        sample_means: ``(N, d)``, row i the mean ``ybar_i`` of task i's observations.
        counts: ``(N,)`` numbers of observations ``n_i`` (or one int for all tasks).
        sigma, beta, noise: the prior stds of ``phi`` and ``theta_i | phi``, and the observation std ``s``.
        center: ``c``, the mean of ``p(phi)`` (scalar or ``(d,)``).
    """
    sample_means = sample_means.to(torch.float64)
    n = torch.as_tensor(counts, dtype=torch.float64).expand(sample_means.shape[0])
    weights = 1.0 / (beta**2 + noise**2 / n)  # (N,) precision of ybar_i around phi
    precision = 1.0 / sigma**2 + float(weights.sum())
    center = torch.as_tensor(center, dtype=torch.float64)
    mean = (center / sigma**2 + (weights[:, None] * sample_means).sum(0)) / precision
    return IsotropicGaussian(mean, 1.0 / precision)


def gaussian_task_posterior(prior: IsotropicGaussian, y: torch.Tensor, noise: float) -> IsotropicGaussian:
    """Posterior of a task's ``theta`` under ``prior`` after observing the rows of ``y`` (n, d), std ``noise``."""
    y = y.to(torch.float64)
    precision = 1.0 / prior.var + y.shape[0] / noise**2
    mean = (prior.mean.to(torch.float64) / prior.var + y.sum(0) / noise**2) / precision
    return IsotropicGaussian(mean, 1.0 / precision)


class GaussianMeanTask(TensorTask):
    """A task of the conjugate family: observations ``y_j ~ N(theta, s^2 I)``; rows of ``y`` (n, d).

    ``loss``: mean Gaussian NLL per example. ``evaluate`` on ``thetas`` (M, d), the predictive being the
    mixture ``(1/M) sum_m N(theta_m, s^2 I)``: ``loss`` (its NLL per example), ``mse`` (squared error of
    the predictive mean per coordinate), ``theta_mse`` (squared error of the mean of ``thetas`` against
    the task's true ``theta``, per coordinate).
    """

    primary_metric = "mse"
    higher_is_better = False

    def __init__(
        self, name: str, splits: dict[str, torch.Tensor], noise: float, theta_true: torch.Tensor
    ) -> None:
        super().__init__(name, {k: (None, v) for k, v in splits.items()})
        self.noise = float(noise)
        self.theta_true = theta_true
        self.dim = theta_true.shape[0]

    def _log_density(self, thetas: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``log N(y_j; theta_m, s^2 I)``, shape ``(n, M)`` for ``y`` (n, d), ``thetas`` (M, d)."""
        sq = torch.cdist(y.to(thetas.dtype), thetas).square()  # (n, M)
        return -0.5 * (sq / self.noise**2 + self.dim * math.log(2 * math.pi * self.noise**2))

    def per_example_loss(self, theta: torch.Tensor, x: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor:
        sq = (y.to(theta.dtype) - theta).square().sum(-1)  # (B,)
        return 0.5 * (sq / self.noise**2 + self.dim * math.log(2 * math.pi * self.noise**2))

    @torch.no_grad()
    def evaluate(self, thetas: torch.Tensor, split: str = "test") -> dict[str, float]:
        rows = as_rows(thetas, self.dim).to(torch.float64)
        _, y = self.batch(split)
        y = y.to(torch.float64)
        log_pred = torch.logsumexp(self._log_density(rows, y), dim=1) - math.log(rows.shape[0])  # (n,)
        mean = rows.mean(0)
        return {
            "mse": float((y - mean).square().mean()),
            "loss": float(-log_pred.mean()),
            "theta_mse": float((mean - self.theta_true.to(torch.float64)).square().mean()),
            "n": float(len(y)),
        }


@dataclass(kw_only=True)
class ConjugateBenchmark(SyntheticBenchmark):
    """The conjugate family with its generating values and closed-form posteriors.

    ``sigma``, ``beta``, ``noise`` (``s``), ``center`` (``c``, (d,)) are the generating parameters,
    equal to LiFT's ``sigma``, ``beta`` (with ``tau = 1``) for an exact comparison; ``phi_true`` the drawn
    shared latent.
    """

    sigma: float
    beta: float
    noise: float
    center: torch.Tensor
    phi_true: torch.Tensor

    def phi_posterior(self, split: str = "train") -> IsotropicGaussian:
        """``p(phi | D)`` given the ``split`` examples of every meta-training task."""
        means = torch.stack([task.batch(split)[1].double().mean(0) for task in self.train])  # (N, d)
        counts = torch.tensor([task.n_examples(split) for task in self.train])
        return conjugate_phi_posterior(means, counts, self.sigma, self.beta, self.noise, self.center)

    def new_task_prior(self) -> IsotropicGaussian:
        """``p(theta* | D) = N(m, v + beta^2)``: what LiFT's learned prior should be (for K = 1)."""
        post = self.phi_posterior()
        return IsotropicGaussian(post.mean, post.var + self.beta**2)

    def task_posterior(self, task: GaussianMeanTask, split: str = "train") -> IsotropicGaussian:
        """``p(theta* | D, D*)`` for a new task after its ``split`` examples (the Bayes-optimal adapter)."""
        return gaussian_task_posterior(self.new_task_prior(), task.batch(split)[1], self.noise)


def conjugate_family(
    n_train_tasks: int = 10,
    n_dev_tasks: int = 2,
    n_test_tasks: int = 10,
    dim: int = 8,
    *,
    n_train: int = 10,
    n_dev: int = 10,
    n_test: int = 50,
    sigma: float = 1.0,
    beta: float = 0.5,
    noise: float = 1.0,
    center: float | torch.Tensor = 0.0,
    seed: int = 0,
) -> ConjugateBenchmark:
    """Draw ``phi``, then every task's ``theta_i`` and its ``n_train`` / ``n_dev`` / ``n_test`` observations.

    ``theta0`` is the prior center ``c`` (float32). All draws come from generators keyed by ``seed``,
    the task's role and its index, so the result is a pure function of the arguments.
    """
    for name, value in (("sigma", sigma), ("beta", beta), ("noise", noise)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    if dim < 1 or n_train < 1 or n_train_tasks < 1 or min(n_dev_tasks, n_test_tasks, n_dev, n_test) < 0:
        raise ValueError("dim, n_train and n_train_tasks must be >= 1 and the other counts >= 0")
    c = torch.as_tensor(center, dtype=torch.float32).expand(dim).clone()
    phi = c + sigma * torch.randn(dim, generator=task_generator(seed, "conjugate", "phi"))

    def make(role: str, count: int) -> list[GaussianMeanTask]:
        tasks = []
        for i in range(count):
            gen = task_generator(seed, "conjugate", role, i)
            theta = phi + beta * torch.randn(dim, generator=gen)
            splits = {  # one generator per split: the test data do not change with n_train
                split: theta
                + noise * torch.randn(size, dim, generator=task_generator(seed, "conjugate", role, i, split))
                for split, size in (("train", n_train), ("dev", n_dev), ("test", n_test))
            }
            tasks.append(GaussianMeanTask(f"conjugate-{role}-{i:03d}", splits, noise, theta))
        return tasks

    config = {
        "family": "conjugate",
        "n_train_tasks": n_train_tasks,
        "n_dev_tasks": n_dev_tasks,
        "n_test_tasks": n_test_tasks,
        "n_train": n_train,
        "n_dev": n_dev,
        "n_test": n_test,
        "sigma": sigma,
        "beta": beta,
        "noise": noise,
        "center": float(c[0]) if bool((c == c[0]).all()) else "tensor",
        "seed": seed,
    }
    return ConjugateBenchmark(
        "conjugate",
        make("train", n_train_tasks),
        make("dev", n_dev_tasks),
        make("test", n_test_tasks),
        c.clone(),
        config,
        sigma=sigma,
        beta=beta,
        noise=noise,
        center=c,
        phi_true=phi,
    )
