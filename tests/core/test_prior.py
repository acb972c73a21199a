import math

import pytest
import torch

from liftpeft.core import HierarchicalPrior


def test_log_probs_match_torch_distributions():
    torch.manual_seed(0)
    center = torch.randn(5)
    prior = HierarchicalPrior(sigma=0.3, beta=0.7, center=center)
    phi, theta = torch.randn(5), torch.randn(3, 5)
    ref_phi = torch.distributions.Normal(center, 0.3).log_prob(phi).sum()
    ref_theta = torch.distributions.Normal(phi, 0.7).log_prob(theta).sum(-1)
    assert torch.allclose(prior.log_prob_phi(phi), ref_phi, atol=1e-5)
    assert torch.allclose(prior.log_prob_theta(theta, phi), ref_theta, atol=1e-5)


def test_gradients_match_autograd():
    torch.manual_seed(1)
    prior = HierarchicalPrior(sigma=0.5, beta=0.2, center=torch.randn(4))
    phi = torch.randn(4, requires_grad=True)
    theta = torch.randn(2, 4, requires_grad=True)
    prior.log_prob_phi(phi).backward()
    assert torch.allclose(phi.grad, prior.grad_log_prob_phi(phi.detach()), atol=1e-5)
    phi.grad = None
    prior.log_prob_theta(theta, phi).sum().backward()
    assert torch.allclose(
        theta.grad, prior.grad_theta_log_prob_theta(theta.detach(), phi.detach()), atol=1e-4
    )
    assert torch.allclose(
        phi.grad, prior.grad_phi_log_prob_theta(theta.detach(), phi.detach()).sum(0), atol=1e-4
    )


def test_phi_conditional_is_the_exact_gaussian_posterior():
    # p(phi | thetas) ∝ N(phi; c, s^2) prod_i N(theta_i; phi, b^2): precision 1/s^2 + N/b^2.
    sigma, beta, n = 0.4, 0.3, 7
    prior = HierarchicalPrior(sigma, beta, center=torch.tensor([0.5], dtype=torch.float64))
    theta = torch.linspace(-1, 2, n, dtype=torch.float64)[:, None]
    mean, var = prior.phi_conditional(theta.sum(0), n)
    precision = 1 / sigma**2 + n / beta**2
    assert var == pytest.approx(1 / precision)
    assert mean.item() == pytest.approx((0.5 / sigma**2 + theta.sum().item() / beta**2) / precision, rel=1e-6)
    # the mode of the log joint in phi is the conditional mean
    grid = torch.linspace(mean.item() - 0.01, mean.item() + 0.01, 2001, dtype=torch.float64)[:, None]
    joint = torch.stack([prior.log_prob_phi(g) + prior.log_prob_theta(theta, g).sum() for g in grid])
    assert grid[joint.argmax()].item() == pytest.approx(mean.item(), abs=2e-5)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_bad_scales_are_refused(bad):
    with pytest.raises(ValueError, match="sigma"):
        HierarchicalPrior(sigma=bad, beta=0.1)
    with pytest.raises(ValueError, match="beta"):
        HierarchicalPrior(sigma=0.1, beta=bad)
