"""The clustered warm-up of the structured prior: the first partition and hard-EM reassignment."""

import itertools

import pytest
import torch

from liftpeft.core.prior import HierarchicalPrior
from liftpeft.core.warmup import ClusteredWarmup


def _warmup(n_tasks=12, dim=6, clusters=2, **kwargs):
    prior = HierarchicalPrior(sigma=1.0, beta=1.0)
    return ClusteredWarmup(
        prior, n_tasks, dim, lr=1e-2, clusters=clusters, generator=torch.Generator().manual_seed(0), **kwargs
    )


def test_offsets_seeding_recovers_a_planted_partition_and_keeps_every_adapter():
    """Offsets drawn around two well-separated points (distance 6, noise 0.3) are split as planted;
    each centre moves to its cluster's mean adapter and no theta_i moves."""
    gen = torch.Generator().manual_seed(1)
    warmup = _warmup(init_partition="offsets", assign_after=10)
    truth = torch.tensor([0, 1] * 6)
    planted = torch.stack([torch.full((6,), -3.0), torch.full((6,), 3.0)])
    warmup.delta = planted[truth] + 0.3 * torch.randn(12, 6, generator=gen)
    warmup.phis += 0.5  # the shared centre the warm-up reached
    warmup.step_count = 10
    assert warmup.needs_seeding and not warmup.needs_gradients
    before = warmup.theta.clone()
    warmup.seed_clusters()
    assert torch.allclose(warmup.theta, before, atol=1e-5)
    z = warmup.z
    assert z.tolist() == truth.tolist() or z.tolist() == (1 - truth).tolist()
    for k in range(2):
        assert torch.allclose(warmup.phis[k], before[z == k].mean(0), atol=1e-5)
        assert warmup.delta[z == k].mean(0).abs().max() < 1e-5


def test_without_reassignment_the_first_partition_stays_for_the_whole_warm_up():
    """A loss that prefers centre 1 for every task moves all tasks there with reassignment, none
    without it."""

    def loss_fn(i, rows):
        return torch.tensor([1.0, 0.0])

    def grad_fn(rows):
        return torch.zeros_like(rows)

    for reassign, expected in ((True, {1}), (False, {0, 1})):
        warmup = _warmup(init_partition="random", assign_after=0, reassign=reassign)
        first = warmup.z.clone()
        assert set(first.tolist()) == {0, 1}
        for step in range(30):
            warmup.step(step % 12, grad_fn, loss_fn=loss_fn)
        assert set(warmup.z.tolist()) == expected
        if not reassign:
            assert torch.equal(warmup.z, first)


def test_gradient_seeding_still_needs_the_gradients():
    warmup = _warmup(init_partition="gradients", assign_after=0)
    assert warmup.needs_seeding and warmup.needs_gradients
    with pytest.raises(ValueError, match="grads must be"):
        warmup.seed_clusters()
    gen = torch.Generator().manual_seed(2)
    truth = torch.tensor([0, 1] * 6)
    directions = torch.stack([torch.ones(6), -torch.ones(6)])
    warmup.seed_clusters(directions[truth] + 0.1 * torch.randn(12, 6, generator=gen))
    assert any(warmup.z.tolist() == [p[t] for t in truth.tolist()] for p in itertools.permutations(range(2)))


def test_unknown_partition_is_refused():
    with pytest.raises(ValueError, match="init_partition must be one of"):
        _warmup(init_partition="kmeans")
