"""The sharded sampler on one process: keyed draws, the schedule, and the posterior it samples."""

import math

import pytest
import torch

from liftpeft.core.prior import HierarchicalPrior
from liftpeft.scale import keys
from liftpeft.scale.latent import PaperLatent
from liftpeft.scale.sampler import ShardedGibbs, random_schedule, shard_of


def test_keys_separate_streams_and_reproduce():
    assert keys.key(0, keys.NOISE, 5, 3) == keys.key(0, keys.NOISE, 5, 3)
    seen = {keys.key(0, s, t, i) for s in (1, 2) for t in range(20) for i in range(20)}
    assert len(seen) == 2 * 20 * 20
    a = torch.randn(4, generator=keys.generator(1, keys.NOISE, 2, 3))
    assert torch.equal(a, torch.randn(4, generator=keys.generator(1, keys.NOISE, 2, 3)))


def test_the_schedule_visits_distinct_tasks_of_each_rank_and_its_cost_does_not_grow_with_n():
    for step in range(50):
        tasks = random_schedule(0, 101, 3, 2, step)
        assert len(set(tasks)) == 6
        assert sorted(t % 3 for t in tasks) == [0, 0, 1, 1, 2, 2]
    assert shard_of(1, 10, 3) == [1, 4, 7]
    assert random_schedule(0, 10**9, 2, 1, 0) != random_schedule(0, 10**9, 2, 1, 1)  # no O(N) work


def test_phi_samples_match_the_conjugate_posterior(one_thread):
    """Gaussian likelihoods N(y_i; theta_i, s^2): phi | y is Gaussian with precision 1/sigma^2 +
    N/(beta^2 + s^2). Plain SGLD at a small step; tolerance 0.1 on the mean (its Monte Carlo error
    with these 6000 kept, correlated draws is about 0.03) and 25% on the variance."""
    n, d, sigma, beta, s = 6, 2, 2.0, 0.5, 0.5
    y = torch.randn(n, d, generator=torch.Generator().manual_seed(0)) + 1.0
    prior = HierarchicalPrior(sigma, beta, center=torch.zeros(d))
    sampler = ShardedGibbs(
        PaperLatent(prior, n, d, seed=1),
        n,
        d,
        torch.zeros(d),
        step_size=0.02,
        seed=1,
        theta_curvature=1 / beta**2,
    )
    grad = lambda i, theta: (y[i] - theta) / s**2  # noqa: E731
    draws = []
    for step in range(8000):
        sampler.step(random_schedule(1, n, 1, 3, step), grad)
        if step >= 2000:
            draws.append(sampler.phi.clone())
    draws = torch.stack(draws)
    precision = 1 / sigma**2 + n / (beta**2 + s**2)
    mean = y.sum(0) / (beta**2 + s**2) / precision
    assert torch.allclose(draws.mean(0), mean, atol=0.1)
    assert draws.var(0).div(1 / precision).sub(1).abs().max() < 0.25


def test_bad_steps_are_refused():
    prior = HierarchicalPrior(1.0, 0.1, center=torch.zeros(2))
    with pytest.raises(ValueError, match="curvature"):
        ShardedGibbs(
            PaperLatent(prior, 3, 2, seed=0), 3, 2, torch.zeros(2), step_size=1.0, theta_curvature=100.0
        )
    sampler = ShardedGibbs(PaperLatent(prior, 3, 2, seed=0), 3, 2, torch.zeros(2), step_size=1e-3)
    with pytest.raises(ValueError, match="distinct ids"):
        sampler.step([1, 1], lambda i, t: t)
    with pytest.raises(FloatingPointError, match="task 2"):
        sampler.step([2], lambda i, t: t * math.inf)
    with pytest.raises(ValueError, match="cavity"):
        PaperLatent(prior, 3, 2, seed=0, phi_update="cavity")
