"""Synthetic task families as pure-torch ``TaskObjective`` s: shapes, seeds, closed forms, methods.

Every family is driven through one table of small configurations (``SMALL``); the conjugate family's
closed forms are checked against an independent route: the Laplace approximation of the *joint*
posterior of ``(phi, theta_1..N)`` built from the tasks' own ``loss`` (exact for a Gaussian model).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from liftpeft.core import HierarchicalPrior
from liftpeft.data.synthetic import (
    FAMILIES,
    ClassificationHead,
    IsotropicGaussian,
    SyntheticBenchmark,
    clustered_family,
    conjugate_family,
    conjugate_phi_posterior,
    gaussian_task_posterior,
    rule_family,
    sinusoid_family,
)
from liftpeft.methods import build_method
from liftpeft.objective import TaskObjective, loss_and_grad

SMALL = {
    "conjugate": dict(n_train_tasks=4, n_dev_tasks=1, n_test_tasks=2, dim=5, n_train=6, n_dev=3, n_test=7),
    "clustered": dict(
        n_clusters=2, n_train_tasks=4, n_dev_tasks=1, n_test_tasks=2, n_train=6, n_dev=3, n_test=7
    ),
    "clustered-lowrank": dict(
        n_clusters=2, n_train_tasks=4, n_dev_tasks=1, n_test_tasks=2, n_train=6, n_test=7, head_rank=2
    ),
    "sinusoid": dict(n_train_tasks=4, n_dev_tasks=1, n_test_tasks=2, k_shot=5, n_query=7),
}


def build(kind: str, seed: int = 0, **overrides) -> SyntheticBenchmark:
    family = FAMILIES[kind.split("-")[0]]
    return family(**{**SMALL[kind], **overrides, "seed": seed})


# ---------------------------------------------------------------------------------------------
# Shapes and the TaskObjective contract
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_family_shapes_and_objective_contract(kind):
    bench = build(kind)
    assert (len(bench.train), len(bench.dev), len(bench.test)) == (4, 1, 2)
    assert bench.theta0.shape == (bench.dim,) and bench.theta0.dtype == torch.float32
    problem = bench.meta_problem()
    assert problem.dim == bench.dim and problem.description["benchmark"] == bench.name
    task = bench.test[0]
    assert isinstance(task, TaskObjective)
    assert task.n_examples("test") == 7 and task.n_examples("train") >= 5
    loss = task.loss(bench.theta0, torch.tensor([0, 2]))
    assert loss.shape == () and math.isfinite(float(loss))
    one = task.evaluate(bench.theta0)
    many = task.evaluate(torch.stack([bench.theta0, bench.theta0 + 0.01]))
    assert task.primary_metric in one and set(one) == set(many)
    assert all(math.isfinite(v) for v in one.values())
    assert one["n"] == 7.0
    # M copies of one adapter predict exactly what the adapter predicts
    assert task.evaluate(bench.theta0.expand(3, -1)) == pytest.approx(one, rel=1e-6)
    with pytest.raises(ValueError, match="unknown split"):
        task.n_examples("validation")
    with pytest.raises(ValueError, match="shape"):
        task.evaluate(torch.zeros(bench.dim + 1))


def test_primary_metrics_and_directions():
    assert build("conjugate").test[0].primary_metric == "mse"
    assert build("sinusoid").test[0].primary_metric == "mse"
    assert not build("sinusoid").test[0].higher_is_better
    clustered = build("clustered").test[0]
    assert clustered.primary_metric == "accuracy" and clustered.higher_is_better


def test_loss_is_the_mean_of_per_example_losses():
    task = build("sinusoid").train[0]
    theta = build("sinusoid").theta0
    idx = torch.tensor([1, 3])
    singles = torch.stack([task.loss(theta, idx[i : i + 1]) for i in range(2)])
    assert task.loss(theta, idx) == pytest.approx(float(singles.mean()), rel=1e-6)
    assert task.loss(theta) == pytest.approx(float(task.loss(theta, torch.arange(task.n_examples()))))


# ---------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------


def _fingerprint(bench: SyntheticBenchmark) -> list[torch.Tensor]:
    out = [bench.theta0]
    for task in [*bench.train, *bench.dev, *bench.test]:
        for split in ("train", "dev", "test"):
            if task.n_examples(split):
                x, y = task.batch(split)
                out += [y.float()] + ([] if x is None else [x])
    return out


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_same_seed_same_family_other_seed_other_family(kind):
    torch.manual_seed(123)  # the global RNG plays no part
    a = _fingerprint(build(kind, seed=5))
    torch.manual_seed(456)
    b = _fingerprint(build(kind, seed=5))
    c = _fingerprint(build(kind, seed=6))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not all(torch.equal(u, v) for u, v in zip(a, c) if u.shape == v.shape)


@pytest.mark.parametrize("kind", ["conjugate", "clustered", "sinusoid"])
def test_tasks_do_not_change_when_more_are_requested(kind):
    few, more = build(kind), build(kind, n_train_tasks=9, n_test_tasks=5)
    for small, big in ((few.train, more.train), (few.test, more.test)):
        for s, b in zip(small, big):
            assert s.name == b.name
            assert torch.equal(s.batch("train")[1], b.batch("train")[1])
            assert torch.equal(s.batch("test")[1], b.batch("test")[1])


def test_rule_family_is_still_there():
    tasks = rule_family(4, seed=0)
    assert [t.name for t in tasks] == ["task-000", "task-001", "task-002", "task-003"]
    assert tasks[0].kind == "choice"


# ---------------------------------------------------------------------------------------------
# Differentiability of every loss
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_loss_gradient_matches_finite_differences(kind):
    bench = build(kind)
    task = bench.train[1]
    gen = torch.Generator().manual_seed(0)
    theta = (bench.theta0 + 0.3 * torch.randn(bench.dim, generator=gen)).double().requires_grad_(True)
    idx = torch.tensor([0, 1, 4])
    assert torch.autograd.gradcheck(
        lambda th: task.loss(th, idx), (theta,), eps=1e-6, atol=1e-5, fast_mode=True
    )
    _, grad = loss_and_grad(task, theta.detach().float(), idx)
    assert grad.shape == (bench.dim,) and torch.isfinite(grad).all() and grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------
# Closed forms of the conjugate family
# ---------------------------------------------------------------------------------------------


def _joint_laplace(bench, n_obs):
    """Mode and covariance of the joint posterior of ``(phi, theta_1..N)`` from the tasks' losses.

    ``log p = log p(phi) + sum_i log p(theta_i | phi) - sum_i n_i L_i(theta_i)`` (LiFT with tau = 1) is
    quadratic here, so one Newton step from anywhere gives the exact mode and the inverse negative
    Hessian the exact covariance. Returns ``(mode (N + 1, d), covariance)``.
    """
    prior = HierarchicalPrior(bench.sigma, bench.beta, bench.center.double())
    n, d = len(bench.train), bench.dim

    def log_joint(flat):
        phi, thetas = flat[:d], flat[d:].view(n, d)
        out = prior.log_prob_phi(phi) + prior.log_prob_theta(thetas, phi).sum()
        return out - sum(n_i * t.loss(th) for n_i, t, th in zip(n_obs, bench.train, thetas))

    start = torch.zeros((n + 1) * d, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(log_joint(start), start)
    hessian = torch.autograd.functional.hessian(log_joint, start.detach())
    covariance = torch.linalg.inv(-hessian)
    mode = start.detach() + covariance @ grad
    return mode.view(n + 1, d), covariance


def test_conjugate_phi_posterior_equals_the_joint_laplace_posterior():
    bench = conjugate_family(3, 0, 1, dim=2, n_train=4, sigma=0.8, beta=0.6, noise=0.9, center=0.4, seed=3)
    mode, cov = _joint_laplace(bench, [4, 4, 4])
    closed = bench.phi_posterior()
    torch.testing.assert_close(closed.mean, mode[0], rtol=1e-9, atol=1e-9)
    assert closed.var == pytest.approx(cov[0, 0].item(), rel=1e-9)
    assert cov[0, 1].item() == pytest.approx(0.0, abs=1e-12)  # coordinates are independent


def test_conjugate_phi_posterior_with_unequal_task_sizes():
    gen = torch.Generator().manual_seed(0)
    means, counts = torch.randn(3, 2, generator=gen, dtype=torch.float64), torch.tensor([1, 5, 20])
    got = conjugate_phi_posterior(means, counts, sigma=2.0, beta=0.5, noise=1.5, center=0.1)
    weights = 1.0 / (0.25 + 2.25 / counts.double())
    var = 1.0 / (1 / 4.0 + weights.sum())
    torch.testing.assert_close(got.mean, var * (0.1 / 4.0 + (weights[:, None] * means).sum(0)))
    assert got.var == pytest.approx(float(var))
    # one observation per task: SPEC section 8's v = 1/(1/sigma^2 + N/(beta^2 + s^2))
    single = conjugate_phi_posterior(means, 1, sigma=2.0, beta=0.5, noise=1.5)
    assert single.var == pytest.approx(1.0 / (1 / 4.0 + 3 / (0.25 + 2.25)))


def test_conjugate_posterior_tends_to_the_hierarchical_prior_conditional():
    """Observing every theta_i exactly (noise -> 0), p(phi | D) is core's p(phi | theta_1..N)."""
    bench = conjugate_family(5, 0, 0, dim=4, n_train=3, sigma=0.7, beta=0.4, noise=1e-6, center=0.2, seed=1)
    thetas = torch.stack([t.theta_true for t in bench.train]).double()
    mean, var = HierarchicalPrior(0.7, 0.4, bench.center.double()).phi_conditional(thetas.sum(0), 5)
    got = bench.phi_posterior()
    torch.testing.assert_close(got.mean, mean, rtol=1e-5, atol=1e-5)
    assert got.var == pytest.approx(var, rel=1e-6)


def test_new_task_prior_and_task_posterior():
    bench = conjugate_family(4, 0, 2, dim=3, n_train=5, sigma=1.0, beta=0.5, noise=0.8, seed=2)
    post = bench.phi_posterior()
    prior = bench.new_task_prior()
    torch.testing.assert_close(prior.mean, post.mean)
    assert prior.var == pytest.approx(post.var + 0.25)
    task = bench.test[0]
    got = bench.task_posterior(task)
    # independent route: maximise log N(theta; prior) - n L(theta) (quadratic: one Newton step)
    n = task.n_examples("train")

    def log_post(theta):
        return -0.5 * (theta - prior.mean).square().sum() / prior.var - n * task.loss(theta)

    start = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(log_post(start), start)
    cov = torch.linalg.inv(-torch.autograd.functional.hessian(log_post, start.detach()))
    torch.testing.assert_close(got.mean, start.detach() + cov @ grad)
    assert got.var == pytest.approx(cov[0, 0].item())
    assert gaussian_task_posterior(IsotropicGaussian(prior.mean, 1e12), task.batch("train")[1], 0.8).mean[
        0
    ] == pytest.approx(task.batch("train")[1][:, 0].double().mean().item(), rel=1e-6)


def test_conjugate_evaluate_metrics():
    bench = conjugate_family(2, 0, 1, dim=3, n_test=4000, noise=0.5, seed=0)
    task = bench.test[0]
    truth = task.evaluate(task.theta_true)
    assert truth["theta_mse"] == 0.0
    assert truth["mse"] == pytest.approx(0.25, rel=0.05)  # noise variance per coordinate
    assert truth["loss"] == pytest.approx(1.5 * (1 + math.log(2 * math.pi * 0.25)), rel=0.02)


# ---------------------------------------------------------------------------------------------
# Clustered and sinusoid specifics
# ---------------------------------------------------------------------------------------------


def test_clustered_family_structure():
    bench = clustered_family(3, 6, 0, 3, n_train=5, n_train_meta=12, n_test=200, noise=0.0, seed=0)
    assert [t.cluster for t in bench.train] == [0, 1, 2, 0, 1, 2]
    assert bench.train[0].n_examples() == 12 and bench.test[0].n_examples() == 5
    task = bench.test[1]
    true_theta = torch.cat([task.true_head[:, :-1].reshape(-1), task.true_head[:, -1]])
    assert task.evaluate(true_theta)["accuracy"] == 1.0  # noise-free labels are the true argmax
    # a task's head is closer to its own cluster head than to the others
    dists = (bench.centres - task.true_head).flatten(1).norm(dim=1)
    assert int(dists.argmin()) == task.cluster


def test_low_rank_head_starts_like_lora():
    head = ClassificationHead(n_classes=3, feature_dim=5, rank=2)
    assert head.dim == 2 * 5 + 3 * 2 + 3
    theta0 = head.init(torch.Generator().manual_seed(0))
    w, b = head.weights(theta0)
    assert (
        theta0[:10].abs().sum() > 0 and torch.equal(w, torch.zeros(3, 5)) and torch.equal(b, torch.zeros(3))
    )


def test_sinusoid_tasks_and_model():
    bench = sinusoid_family(20, 0, 2, k_shot=10, n_query=50, seed=0)
    assert bench.dim == 1761  # MLP 1-40-40-1: 40 + 40 + 1600 + 40 + 40 + 1
    assert bench.test[0].n_examples("train") == 10 and bench.train[0].n_examples("train") == 20
    for task in bench.train:
        assert 0.1 <= task.amplitude <= 5.0 and 0.0 <= task.phase <= math.pi
        x, y = task.batch("test")
        assert x.abs().max() <= 5.0
        torch.testing.assert_close(y, task.amplitude * torch.sin(x[:, 0] - task.phase))
    weights = bench.model.spec.unflatten(bench.theta0)
    assert weights["layer1.weight"].abs().max() <= 1 / math.sqrt(40)
    assert weights["layer0.weight"].abs().max() <= 1.0


# ---------------------------------------------------------------------------------------------
# Methods run end to end on every family
# ---------------------------------------------------------------------------------------------

TINY_METHODS = {
    "lift": dict(
        k=2,
        sigma=1.0,
        beta=1.0,
        step_size=1e-3,
        warmup_lr=1e-2,
        steps=40,
        warmup_steps=10,
        burnin_steps=10,
        thin=2,
        batch_size=4,
        adapt_steps=5,
        adapt_keep_last=2,
    ),
    "no-meta": dict(adapt_steps=5, adapt_lr=1e-2, adapt_batch_size=4),
    "union": dict(meta_steps=10, meta_lr=1e-2, meta_batch_size=4, adapt_steps=5, adapt_batch_size=4),
}


@pytest.mark.parametrize("method", sorted(TINY_METHODS))
@pytest.mark.parametrize("kind", sorted(SMALL))
def test_methods_run_end_to_end(kind, method):
    bench = build(kind)
    algo = build_method(method, **TINY_METHODS[method])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # variance-inflation warnings of the tiny step sizes
        state = algo.meta_train(bench.meta_problem(), seed=0)
        samples = algo.adapt(state, bench.test[0], seed=0)
    assert samples.dim() == 2 and samples.shape[1] == bench.dim and torch.isfinite(samples).all()
    metrics = bench.test[0].evaluate(samples)
    assert math.isfinite(metrics[bench.test[0].primary_metric])
