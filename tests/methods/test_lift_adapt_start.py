"""LiFT's test-time start under a mixture prior: the paper's choice at the means, or every component."""

import pytest
import torch

from liftpeft.learned_prior import LearnedPrior
from liftpeft.methods.lift import LiftConfig, adapt_to_task


class DoubleWell:
    """A 1-D task with a shallow well near 0.5 (floor 0.3) and a deep, narrow one at 3.5 (floor 0):
    at the component means 0 and 3 the shallow well looks better (0.43 against 1.25), after
    adapting the deep one is (about 0.3 against about 0)."""

    name, primary_metric, higher_is_better = "double-well", "loss", False

    def n_examples(self, split="train"):
        return 8

    def loss(self, theta, idx=None, split="train"):
        shallow = 0.3 + 0.5 * (theta[0] - 0.5) ** 2
        deep = 5.0 * (theta[0] - 3.5) ** 2
        return torch.minimum(shallow, deep)

    def evaluate(self, thetas, split="test"):
        thetas = thetas[None] if thetas.dim() == 1 else thetas
        return {"loss": float(torch.stack([self.loss(t) for t in thetas]).mean())}


def _prior():
    return LearnedPrior(
        weights=torch.tensor([0.5, 0.5], dtype=torch.float64),
        means=torch.tensor([[0.0], [3.0]], dtype=torch.float64),
        covariances=torch.full((2, 1), 1e-4, dtype=torch.float64),
        center=torch.zeros(1, dtype=torch.float64),
        beta=1.0,
        sigma=1.0,
    )


def _config(start):
    return LiftConfig(
        adapt_method="map", adapt_steps=300, adapt_step_size=0.01, preconditioner=None, adapt_start=start
    )


def test_adapting_from_every_component_keeps_the_run_that_fits_best():
    task = DoubleWell()
    best = adapt_to_task(_prior(), task, _config("best"))
    assert best.init_component == 0 and task.loss(best.theta) > 0.25
    every = adapt_to_task(_prior(), task, _config("all"))
    assert every.init_component == 1 and task.loss(every.theta) < 0.05
    after = every.report["loss_after_adapting_from"]
    assert len(after) == 2 and after[1] < after[0]
    assert every.config["init_component"] == 1


def test_adapt_start_is_checked():
    with pytest.raises(ValueError, match="adapt_start must be one of"):
        LiftConfig(adapt_start="first")


def test_gain_cap_comes_from_the_task_prior():
    assert LiftConfig().theta_max_gain is None
    config = LiftConfig(gain_cap=True, beta=0.01, step_size=1e-3)
    assert config.theta_max_gain == pytest.approx(0.4 / (1e-3 * 1e4))
    assert LiftConfig(gain_cap=True, preconditioner=None).theta_max_gain is None


def test_capped_adaptation_stays_near_the_prior_where_the_task_has_no_gradient():
    """A task that constrains only coordinate 0: with beta = 0.01 and pSGLD step 1e-3, the other
    coordinates are thrown ~10 out on the first step uncapped, and stay within a few beta capped."""

    class FirstCoordinate(DoubleWell):
        def loss(self, theta, idx=None, split="train"):
            return (theta[0] - 0.01) ** 2

    prior = LearnedPrior(
        weights=torch.ones(1, dtype=torch.float64),
        means=torch.zeros(1, 50, dtype=torch.float64),
        covariances=torch.full((1, 50), 1e-6, dtype=torch.float64),
        center=torch.zeros(50, dtype=torch.float64),
        beta=0.01,
        sigma=0.01,
    )
    spread = {}
    for cap in (False, True):
        config = LiftConfig(adapt_steps=30, step_size=1e-3, beta=0.01, gain_cap=cap)
        spread[cap] = float(adapt_to_task(prior, FirstCoordinate(), config).theta[1:].abs().max())
    assert spread[False] > 1.0
    assert spread[True] < 0.05
