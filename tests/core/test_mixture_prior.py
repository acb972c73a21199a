import pytest
import torch

from liftpeft.core import MixturePrior, OnlineGaussianMixture, adapt


def fitted(weights, means, variances):
    return OnlineGaussianMixture.from_params(
        torch.tensor(weights, dtype=torch.float64),
        torch.tensor(means, dtype=torch.float64),
        torch.tensor(variances, dtype=torch.float64),
    )


def test_log_prob_is_the_beta_convolved_mixture():
    mix = fitted([0.3, 0.7], [[0.0, 1.0], [2.0, -1.0]], [[0.5, 0.2], [0.1, 0.3]])
    prior = MixturePrior(mix, beta=0.4)
    theta = torch.tensor([[0.5, 0.5], [1.0, -2.0]], dtype=torch.float64)
    comps = [torch.distributions.Normal(mix.means_[j], (mix.covariances_[j] + 0.16).sqrt()) for j in range(2)]
    ref = torch.logsumexp(
        torch.stack([torch.log(mix.weights_[j]) + comps[j].log_prob(theta).sum(-1) for j in range(2)]), dim=0
    )
    assert torch.allclose(prior.log_prob(theta), ref, atol=1e-10)
    assert torch.allclose(prior.log_prob(theta[0]), ref[0], atol=1e-10)


def test_grad_log_prob_matches_autograd():
    gen = torch.Generator().manual_seed(0)
    mix = fitted(
        [0.2, 0.5, 0.3],
        torch.randn(3, 6, generator=gen).tolist(),
        (0.1 + torch.rand(3, 6, generator=gen)).tolist(),
    )
    prior = MixturePrior(mix, beta=0.05)
    theta = torch.randn(4, 6, generator=gen, dtype=torch.float64).requires_grad_(True)
    prior.log_prob(theta).sum().backward()
    assert torch.allclose(prior.grad_log_prob(theta.detach()), theta.grad, atol=1e-9)


def test_sgld_adaptation_samples_the_gaussian_posterior():
    # K = 1: prior N(mu, v0) with v0 = Sigma + beta^2, likelihood N(y; theta, s^2) per coordinate
    # => posterior N((mu/v0 + y/s^2) vp, vp), vp = 1/(1/v0 + 1/s^2). 300 coordinates, 4000 kept draws.
    d, s2 = 300, 0.5
    gen = torch.Generator().manual_seed(1)
    mu, y = torch.randn(d, generator=gen), torch.randn(d, generator=gen) + 2
    prior = MixturePrior(fitted([1.0], [mu.tolist()], [[0.75] * d]), beta=0.5)
    v0 = 1.0
    vp = 1 / (1 / v0 + 1 / s2)
    mp = (mu / v0 + y / s2) * vp
    result = adapt(prior, lambda th: -(th - y) / s2, steps=5000, step_size=0.02, keep_last=4000, seed=3)
    z = (result.samples.mean(0) - mp) / vp**0.5
    # tolerances: mean within 0.15 posterior sd (rms), variance within 6% (Euler bias 1.5%)
    assert z.square().mean().sqrt() < 0.15
    assert (result.samples.var(0) / vp).mean().item() == pytest.approx(1.0, abs=0.06)
    assert torch.equal(result.theta, result.samples[-1])


def test_map_adaptation_finds_the_posterior_mode():
    mix = fitted([0.5, 0.5], [[0.0, 0.0], [4.0, 4.0]], [[0.2, 0.2], [0.2, 0.2]])
    prior = MixturePrior(mix, beta=0.1)
    y = torch.tensor([3.5, 3.0])
    result = adapt(
        prior,
        lambda th: -(th - y),
        steps=3000,
        step_size=0.05,
        method="map",
        loss_fn=lambda th: float((th - y).square().sum()),
    )
    assert result.init_component == 1  # the component nearer the data
    vp = 1 / (1 / 0.21 + 1)
    mode = (torch.tensor([4.0, 4.0]) / 0.21 + y) * vp  # the far component's pull is negligible
    assert torch.allclose(result.theta, mode, atol=1e-3)


def test_adapt_refuses_a_step_that_diverges_on_the_prior():
    prior = MixturePrior(fitted([1.0], [[0.0]], [[1e-6]]), beta=0.01)
    with pytest.raises(ValueError, match="diverge"):
        adapt(prior, torch.zeros_like, steps=1, step_size=1e-2)
