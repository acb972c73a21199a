"""LoraHub: the CMA-ES search of composition weights improves the support loss over uniform weights."""

import pytest
import torch

from liftpeft.data.synthetic import rule_family
from liftpeft.methods import build_method
from liftpeft.methods.lorahub import compose
from liftpeft.methods.zoo_weights import support_loss, uniform_weights
from liftpeft.peft_integration import PeftBackbone, PeftTaskObjective

from .quadratic import QuadraticTask


def _synthetic_zoo(seed=0, n=5, d=8):
    """A zoo of 5 random adapters and a new task whose optimum is 0.8 theta_1 - 0.5 theta_3."""
    g = torch.Generator().manual_seed(seed)
    zoo = torch.randn(n, d, generator=g)
    target = 0.8 * zoo[1] - 0.5 * zoo[3]
    centers = {
        s: target + 0.1 * torch.randn(k, d, generator=g) for s, k in (("train", 8), ("dev", 4), ("test", 16))
    }
    return zoo, QuadraticTask("new", torch.eye(d), centers)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_search_improves_the_support_loss_over_uniform_weights(seed):
    zoo, task = _synthetic_zoo(seed)
    method = build_method("lorahub", adapt_evaluations=200)
    found = method.adapt(zoo, task, seed=seed)[0]
    uniform = support_loss(task, compose(zoo, torch.tensor(uniform_weights(5))), 8)
    searched = support_loss(task, found, 8)
    # stated tolerance: the search removes at least 90% of the uniform merge's support loss
    assert searched < 0.1 * uniform, (searched, uniform)
    weights = method.weights(zoo, task, seed=seed)
    assert weights.abs().max() <= 1.5 + 1e-9  # bounded


def test_the_search_is_deterministic_given_the_seed():
    zoo, task = _synthetic_zoo(0)
    method = build_method("lorahub", adapt_evaluations=24)
    assert torch.equal(method.weights(zoo, task, seed=3), method.weights(zoo, task, seed=3))


def test_the_l1_penalty_pulls_useless_weights_to_zero():
    zoo, task = _synthetic_zoo(0)
    free = build_method("lorahub", adapt_evaluations=300, adapt_l1=0.0).weights(zoo, task, seed=0)
    sparse = build_method("lorahub", adapt_evaluations=300, adapt_l1=5.0).weights(zoo, task, seed=0)
    assert sparse.abs().sum() < free.abs().sum()


@pytest.mark.parametrize("kind", ["gpt2", "t5"])
def test_lorahub_runs_on_causal_and_seq2seq_models(kind, tiny_models):
    backbone = PeftBackbone(tiny_models[kind])
    task = PeftTaskObjective(backbone, rule_family(1, seed=0, n_train=4, n_dev=2, n_test=4)[0])
    g = torch.Generator().manual_seed(0)
    zoo = backbone.theta0 + 0.3 * torch.randn(3, backbone.dim, generator=g)
    method = build_method("lorahub", adapt_evaluations=12, adapt_steps=2, adapt_batch_size=4)
    samples = method.adapt(zoo, task, seed=0)
    assert samples.shape == (1, backbone.dim) and torch.isfinite(samples).all()


def test_a_large_zoo_is_searched_over_a_random_pool_of_its_adapters():
    zoo = torch.randn(30, 3)
    method = build_method("lorahub", adapt_pool_size=20)
    pool = method.pool(zoo, seed=0)
    assert pool.shape == (20, 3) and torch.equal(pool, method.pool(zoo, seed=0))
    assert all(any(torch.equal(row, z) for z in zoo) for row in pool)
    assert torch.equal(build_method("lorahub", adapt_pool_size=0).pool(zoo, seed=0), zoo)
