"""SGLD-Gibbs on the conjugate linear-Gaussian hierarchy (SPEC section 8).

Tasks observe ``y_i`` with ``log p(D_i|theta_i) = -||theta_i - y_i||^2 / (2 s^2)``; then the posterior of
``phi`` is ``N(m, v)`` with ``v = 1/(1/sigma^2 + N/(beta^2 + s^2))`` and
``m = v (c/sigma^2 + sum_i y_i / (beta^2 + s^2))``, independently in every coordinate.
"""

import pytest
import torch

from liftpeft.core import HierarchicalPrior, SGLDGibbs

N_TASKS, DIM, SIGMA, BETA, S = 6, 200, 1.0, 0.5, 0.5


def conjugate_problem(seed=0):
    gen = torch.Generator().manual_seed(seed)
    y = 0.7 + 1.5 * torch.randn(N_TASKS, DIM, generator=gen)
    center = 0.3 * torch.ones(DIM)
    v = 1.0 / (1.0 / SIGMA**2 + N_TASKS / (BETA**2 + S**2))
    m = v * (center / SIGMA**2 + y.sum(0) / (BETA**2 + S**2))
    return y, center, m, v


def likelihood_grad(y, i):
    return lambda theta: -(theta - y[i]) / S**2


@pytest.mark.parametrize("phi_update", ["exact", "gibbs", "cavity"])
def test_phi_samples_match_the_closed_form_posterior(phi_update):
    y, center, m, v = conjugate_problem()
    sampler = SGLDGibbs(
        HierarchicalPrior(SIGMA, BETA, center), N_TASKS, DIM, step_size=0.004, phi_update=phi_update, seed=1
    )
    steps, burn_in, thin = 30_000, 3_000, 5
    samples = []
    for t in range(steps):
        i = t % N_TASKS
        sampler.step(i, likelihood_grad(y, i))
        if t >= burn_in and t % thin == 0:
            samples.append(sampler.phi.clone())
    samples = torch.stack(samples)  # (n, DIM): DIM independent chains of the same kind of posterior
    z = (samples.mean(0) - m) / v**0.5
    var_ratio = (samples.var(0) / v).mean().item()
    # Tolerances: the posterior mean within 0.3 posterior sd (rms over coordinates; Monte Carlo error
    # alone is ~0.13 sd here), and the variance within 10% (step-size bias <= 1%, the cavity cache's
    # staleness ~6% at this step size, Monte Carlo error ~3%).
    assert z.square().mean().sqrt().item() < 0.3
    assert var_ratio == pytest.approx(1.0, abs=0.10)


def test_batched_task_steps_sample_the_same_posterior():
    y, center, m, v = conjugate_problem(seed=2)
    sampler = SGLDGibbs(
        HierarchicalPrior(SIGMA, BETA, center), N_TASKS, DIM, step_size=0.004, phi_update="exact", seed=3
    )
    all_tasks = torch.arange(N_TASKS)
    samples = []
    for t in range(8000):
        sampler.step(all_tasks, lambda theta: -(theta - y) / S**2)
        if t >= 1000 and t % 2 == 0:
            samples.append(sampler.phi.clone())
    samples = torch.stack(samples)
    assert ((samples.mean(0) - m) / v**0.5).square().mean().sqrt().item() < 0.3
    assert (samples.var(0) / v).mean().item() == pytest.approx(1.0, abs=0.10)


def test_running_sums_stay_exact():
    y, center, _, _ = conjugate_problem()
    prior = HierarchicalPrior(SIGMA, BETA, center)
    sampler = SGLDGibbs(prior, N_TASKS, DIM, step_size=0.004, phi_update="cavity", seed=0, resync_every=10**9)
    for t in range(500):
        sampler.step(t % N_TASKS, likelihood_grad(y, t % N_TASKS))
    assert torch.allclose(sampler.theta_sum, sampler.theta.sum(0), atol=1e-4)


def test_zero_temperature_zero_gradient_at_the_center_does_not_move():
    center = torch.randn(7)
    for mode in ("exact", "gibbs", "cavity", "sample"):
        sampler = SGLDGibbs(
            HierarchicalPrior(0.1, 0.1, center), 3, 7, step_size=1e-3, phi_update=mode, temperature=0.0
        )
        for t in range(10):
            sampler.step(t % 3, torch.zeros_like)
        assert torch.allclose(sampler.phi, center, atol=1e-6), mode
        assert torch.allclose(sampler.theta, center.expand(3, 7), atol=1e-6), mode


def test_zero_temperature_is_gradient_ascent_on_the_log_posterior():
    prior = HierarchicalPrior(1.0, 1.0)
    sampler = SGLDGibbs(prior, 2, 3, step_size=0.1, phi_update="exact", temperature=0.0)
    sampler.set_state(phi=torch.ones(3), theta=torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]))
    g_lik = torch.tensor([0.5, -0.5, 1.0])
    theta0, phi0 = sampler.theta[0].clone(), sampler.phi.clone()
    sampler.step(0, lambda th: g_lik)
    theta1 = theta0 + 0.05 * ((phi0 - theta0) + g_lik)
    assert torch.allclose(sampler.theta[0], theta1)
    s = theta1 + sampler.theta[1]
    phi1 = phi0 + 0.05 * (-phi0 + (s - 2 * phi0))
    assert torch.allclose(sampler.phi, phi1)


@pytest.mark.parametrize("phi_update", ["exact", "gibbs", "cavity"])
@pytest.mark.parametrize("preconditioner", [None, "rmsprop"])
def test_same_seed_same_chain_and_state_dict_resumes_bit_identically(phi_update, preconditioner):
    y, center, _, _ = conjugate_problem()

    def make(seed):
        return SGLDGibbs(
            HierarchicalPrior(SIGMA, BETA, center),
            N_TASKS,
            DIM,
            step_size=0.004,
            phi_update=phi_update,
            seed=seed,
            preconditioner=preconditioner,
            resync_every=7,
        )

    def run(sampler, start, stop):
        for t in range(start, stop):
            sampler.step(t % N_TASKS, likelihood_grad(y, t % N_TASKS))

    a, b = make(5), make(5)
    run(a, 0, 40)
    run(b, 0, 40)
    assert torch.equal(a.phi, b.phi) and torch.equal(a.theta, b.theta)
    state = a.state_dict()
    run(a, 40, 80)
    c = make(99)  # a different seed: everything must come from the state dict
    c.load_state_dict(state)
    run(c, 40, 80)
    assert torch.equal(a.phi, c.phi) and torch.equal(a.theta, c.theta)
    assert torch.equal(a.theta_sum, c.theta_sum)
    d = make(6)
    run(d, 0, 80)
    assert not torch.equal(a.phi, d.phi)


def test_unstable_step_sizes_are_refused_with_advice():
    prior = HierarchicalPrior(sigma=0.01, beta=0.01)
    with pytest.raises(ValueError, match=r"diverge.*theta_i.*beta"):
        SGLDGibbs(prior, 10, 4, step_size=1e-3)
    with pytest.raises(ValueError, match=r"phi_update='gibbs'"):
        SGLDGibbs(prior, 100, 4, step_size=1e-4, phi_update="exact")
    SGLDGibbs(prior, 100, 4, step_size=1e-4, phi_update="gibbs")  # an exact draw needs no phi step


def test_bad_arguments():
    prior = HierarchicalPrior(1.0, 1.0)
    with pytest.raises(ValueError, match="phi_update"):
        SGLDGibbs(prior, 2, 3, 0.01, phi_update="nope")
    sampler = SGLDGibbs(prior, 2, 3, 0.01)
    with pytest.raises(ValueError, match="distinct"):
        sampler.step(torch.tensor([0, 0]), torch.zeros_like)
    with pytest.raises(IndexError):
        sampler.step(2, torch.zeros_like)
    with pytest.raises(ValueError, match="shape"):
        sampler.step(0, lambda th: torch.zeros(5))
    with pytest.raises(FloatingPointError, match="task"):
        sampler.step(1, lambda th: torch.full_like(th, float("nan")))
    other = SGLDGibbs(prior, 3, 3, 0.01)
    with pytest.raises(ValueError, match="same settings"):
        other.load_state_dict(sampler.state_dict())


def test_finiteness_check_is_exact():
    from liftpeft.core.gibbs import _all_finite

    assert _all_finite(torch.full((4,), 3e38))  # the sum overflows to inf, yet every element is finite
    assert not _all_finite(torch.tensor([1.0, float("nan")]))
    assert not _all_finite(torch.tensor([1.0, float("inf"), -float("inf")]))
