"""``prior.penalty(model)``: value and gradient against independent log densities; LangevinSGD's noise."""

from __future__ import annotations

import math

import pytest
import torch

from liftpeft.core.langevin_optimizer import LangevinSGD
from liftpeft.core.penalty import AdapterMismatchError
from liftpeft.peft_integration.prior_trainer import prior_peft_model
from tests.hub.conftest import make_prior


def _adapter(model, prior):
    names = prior.backbone["spec"]["names"]
    params = dict(model.named_parameters())
    return [params[n] for n in names]


def _gaussian_mixture_log_prob(theta, prior):
    """``log sum_j alpha_j N(theta; mu_j, Sigma_j + beta^2)`` with torch.distributions (float64)."""
    from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

    scale = (prior.covariances.double() + prior.beta**2).sqrt()
    components = Independent(Normal(prior.means.double(), scale), 1)
    return MixtureSameFamily(Categorical(probs=prior.weights.double()), components).log_prob(theta)


def _student_t_mixture_log_prob(theta, prior):
    """The same mixture with multivariate Student-t components (``nu = prior.dof``), by hand."""
    nu, d = prior.dof, theta.numel()
    scale = prior.covariances.double() + prior.beta**2  # (K, d)
    r2 = ((theta[None] - prior.means.double()) ** 2 / scale).sum(1)  # (K,)
    const = math.lgamma((nu + d) / 2) - math.lgamma(nu / 2) - 0.5 * d * math.log(nu * math.pi)
    log_t = const - 0.5 * scale.log().sum(1) - 0.5 * (nu + d) * torch.log1p(r2 / nu)
    return torch.logsumexp(prior.weights.double().log() + log_t, 0)


@pytest.mark.parametrize("dof", [None, 5.0])
def test_penalty_value_and_gradient_equal_autograd_of_an_independent_density(gpt2_backbone, dof):
    prior = make_prior(gpt2_backbone, k=3, variance=1e-3, beta=0.02, dof=dof)
    model = prior_peft_model(prior)
    params = _adapter(model, prior)
    with torch.no_grad():  # somewhere between the components, so every responsibility matters
        for p in params:
            p.add_(0.01 * torch.randn_like(p))
    penalty = prior.penalty(model, scale=0.25)
    assert penalty.dim() == 0 and penalty.requires_grad
    penalty.backward()

    theta = torch.cat([p.detach().reshape(-1) for p in params]).double().requires_grad_(True)
    reference = _gaussian_mixture_log_prob if dof is None else _student_t_mixture_log_prob
    log_p = reference(theta, prior)
    (expected,) = torch.autograd.grad(-0.25 * log_p, theta)
    assert penalty.detach().item() == pytest.approx(-0.25 * log_p.detach().item(), rel=1e-5)
    got = torch.cat([p.grad.reshape(-1) for p in params]).double()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6 * float(expected.abs().max()))
    # only the adapter gets a gradient; the frozen base model none
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)


def test_init_adapter_writes_the_chosen_mean(gpt2_backbone):
    prior = make_prior(gpt2_backbone, k=2)
    model = prior_peft_model(prior)  # starts at the largest-weight component
    theta = torch.cat([p.detach().reshape(-1) for p in _adapter(model, prior)])
    assert torch.equal(theta, prior.means[int(prior.weights.argmax())])
    assert prior.init_adapter(model, component=0) == 0
    assert torch.equal(torch.cat([p.detach().reshape(-1) for p in _adapter(model, prior)]), prior.means[0])
    with pytest.raises(ValueError, match=r"component must be in 0\.\.1"):
        prior.init_adapter(model, component=2)


def test_penalty_refuses_a_model_without_the_priors_adapter(gpt2_backbone, tiny_models):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    prior = make_prior(gpt2_backbone)
    other = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_models["gpt2"]), LoraConfig(r=2, target_modules=["c_proj"])
    )
    with pytest.raises(AdapterMismatchError, match="build its adapter with the prior's PEFT config"):
        prior.penalty(other)


def test_penalty_matches_names_through_a_ddp_style_wrapper(gpt2_backbone):
    prior = make_prior(gpt2_backbone)
    model = prior_peft_model(prior)
    wrapped = torch.nn.Module()
    wrapped.module = model  # DistributedDataParallel names its parameters module.<name>
    assert prior.penalty(wrapped).detach().item() == prior.penalty(model).detach().item()


def test_langevin_sgd_adds_the_stated_noise_with_a_fixed_seed():
    x = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    x.grad = torch.tensor([0.2, 0.4, -1.0])
    lr, n_eff, temperature = 0.1, 50.0, 2.0
    LangevinSGD([x], lr=lr, n_eff=n_eff, temperature=temperature, seed=7).step()
    z = torch.randn(3, generator=torch.Generator().manual_seed(7))
    std = math.sqrt(2 * lr * temperature / n_eff)
    assert LangevinSGD.noise_std(lr, n_eff, temperature) == pytest.approx(std)
    expected = torch.tensor([1.0, -2.0, 0.5]) - lr * torch.tensor([0.2, 0.4, -1.0]) + std * z
    torch.testing.assert_close(x.detach(), expected)


def test_langevin_sgd_at_zero_temperature_is_sgd():
    x = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    x.grad = torch.tensor([1.0, -1.0])
    LangevinSGD([x], lr=0.5, n_eff=10.0, temperature=0.0).step()
    torch.testing.assert_close(x.detach(), torch.tensor([0.5, 2.5]))


def test_langevin_sgd_samples_the_posterior_of_a_mean_loss():
    # loss = (x - m)^2 / (2 s^2 n_eff): the posterior is N(m, s^2); at temperature T, N(m, T s^2)
    m, s, n_eff, temperature = 1.5, 0.3, 20.0, 0.5
    x = torch.nn.Parameter(torch.zeros(2000))  # 2000 independent chains
    opt = LangevinSGD([x], lr=0.02, n_eff=n_eff, temperature=temperature, seed=0)
    samples = []
    for step in range(2000):
        opt.zero_grad()
        ((x - m) ** 2 / (2 * s**2 * n_eff)).sum().backward()
        opt.step()
        if step >= 1000 and step % 50 == 0:
            samples.append(x.detach().clone())
    draws = torch.stack(samples)
    # SGLD's own bias at this step: variance x 1 / (1 - eta lam / 4), eta = 2 lr / n_eff, lam = 1 / s^2
    inflation = 1 / (1 - (2 * 0.02 / n_eff) / s**2 / 4)
    assert float(draws.mean()) == pytest.approx(m, abs=0.01)
    assert float(draws.var()) == pytest.approx(temperature * s**2 * inflation, rel=0.05)


def test_langevin_sgd_refuses_bad_settings():
    x = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match="n_eff"):
        LangevinSGD([x], lr=0.1, n_eff=0.0)
    with pytest.raises(ValueError, match="temperature"):
        LangevinSGD([x], lr=0.1, n_eff=1.0, temperature=-1.0)
