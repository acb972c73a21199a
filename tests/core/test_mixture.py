import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture

from liftpeft.core import NotFittedError, OnlineGaussianMixture


def clustered(n_per, means, sds, seed=0):
    gen = torch.Generator().manual_seed(seed)
    parts = [
        m + s * torch.randn(n, len(m), generator=gen, dtype=torch.float64)
        for n, m, s in zip(n_per, means, sds)
    ]
    x = torch.cat(parts)
    return x[torch.randperm(x.shape[0], generator=gen)]


def test_one_component_equals_running_moments():
    gen = torch.Generator().manual_seed(0)
    x = 3.0 + 0.2 * torch.randn(700, 16, generator=gen, dtype=torch.float64)
    mix = OnlineGaussianMixture(1, buffer_size=25)
    for chunk in x.split(37):  # uneven chunks, the buffer filled mid-chunk
        mix.partial_fit(chunk)
    ref = x.numpy()
    assert mix.n_samples_seen_ == 700
    np.testing.assert_allclose(mix.weights_.numpy(), [1.0])
    np.testing.assert_allclose(mix.means_[0].numpy(), ref.mean(0), rtol=0, atol=1e-5)
    np.testing.assert_allclose(mix.covariances_[0].numpy(), ref.var(0), rtol=0, atol=1e-5)


def test_one_component_float32_samples_still_match_to_1e5():
    gen = torch.Generator().manual_seed(1)
    x = (100.0 + 0.01 * torch.randn(2000, 8, generator=gen)).float()  # large mean, small spread
    mix = OnlineGaussianMixture(1).partial_fit(x)
    ref = x.double().numpy()
    np.testing.assert_allclose(mix.means_[0].numpy(), ref.mean(0), atol=1e-5)
    np.testing.assert_allclose(mix.covariances_[0].numpy(), ref.var(0), atol=1e-5)


def test_separated_clusters_are_recovered_and_agree_with_sklearn():
    means = [torch.full((6,), -4.0), torch.zeros(6), torch.tensor([4.0, 4, 4, -4, -4, -4])]
    x = clustered([300, 200, 100], means, [0.5, 0.3, 0.8])
    mix = OnlineGaussianMixture(3, random_state=0).partial_fit(x)
    ref = GaussianMixture(3, covariance_type="diag", random_state=0).fit(x.numpy())
    order = mix.means_[:, 0].argsort()
    ref_order = np.argsort(ref.means_[:, 0])
    # Stated tolerances: weights within 0.02, means within 0.05, sds within 10% of sklearn's batch EM.
    np.testing.assert_allclose(mix.weights_[order].numpy(), ref.weights_[ref_order], atol=0.02)
    np.testing.assert_allclose(mix.means_[order].numpy(), ref.means_[ref_order], atol=0.05)
    np.testing.assert_allclose(
        mix.covariances_[order].sqrt().numpy(), np.sqrt(ref.covariances_[ref_order]), rtol=0.10
    )
    np.testing.assert_allclose(mix.weights_[order].numpy(), [0.5, 1 / 3, 1 / 6], atol=0.02)
    for j, m in enumerate([means[0], means[1], means[2]]):
        assert torch.allclose(mix.means_[order[j]], m.double(), atol=0.3)  # 4 standard errors
    # no component collapsed onto the variance floor (the trap of tiny initial counts)
    assert mix.covariances_.min() > 0.05


def test_densities_agree_with_sklearn_given_the_same_parameters():
    x = clustered([100, 100], [torch.zeros(4), torch.ones(4) * 3], [1.0, 0.5], seed=3)
    mix = OnlineGaussianMixture(2, random_state=0).partial_fit(x)
    ref = GaussianMixture(2, covariance_type="diag")
    ref.weights_, ref.means_ = mix.weights_.numpy(), mix.means_.numpy()
    ref.covariances_ = mix.covariances_.numpy()
    ref.precisions_cholesky_ = 1.0 / np.sqrt(ref.covariances_)
    probe = x[:20]
    np.testing.assert_allclose(mix.score_samples(probe).numpy(), ref.score_samples(probe.numpy()), rtol=1e-10)
    np.testing.assert_allclose(mix.predict_proba(probe).numpy(), ref.predict_proba(probe.numpy()), atol=1e-10)


def test_grad_log_density_matches_autograd():
    x = clustered([50, 50], [torch.zeros(5), torch.ones(5)], [0.7, 0.4], seed=4)
    mix = OnlineGaussianMixture(2).partial_fit(x)
    probe = (x[:6] + 0.3).clone().requires_grad_(True)
    mix.score_samples(probe).sum().backward()
    assert torch.allclose(mix.grad_log_density(probe.detach()), probe.grad, atol=1e-8)


def test_sample_reproduces_the_mixture():
    x = clustered([300, 100], [torch.zeros(3), torch.full((3,), 5.0)], [1.0, 0.5], seed=5)
    mix = OnlineGaussianMixture(2, random_state=0).partial_fit(x)
    draws = mix.sample(20_000, generator=torch.Generator().manual_seed(0))
    expected_mean = (mix.weights_[:, None] * mix.means_).sum(0)
    assert torch.allclose(draws.mean(0), expected_mean, atol=0.05)
    assert torch.equal(draws, mix.sample(20_000, generator=torch.Generator().manual_seed(0)))


def test_state_dict_round_trip_continues_identically():
    x = clustered([120, 80], [torch.zeros(4), torch.full((4,), 3.0)], [0.5, 0.5], seed=6)
    for cut in (10, 150):  # mid-buffer and after initialisation
        a = OnlineGaussianMixture(2, random_state=1, buffer_size=30).partial_fit(x[:cut])
        b = OnlineGaussianMixture(2).load_state_dict(a.state_dict())
        a.partial_fit(x[cut:])
        b.partial_fit(x[cut:])
        assert torch.equal(a.means_, b.means_) and torch.equal(a.covariances_, b.covariances_)


def test_stable_in_very_high_dimension():
    d = 300_000
    gen = torch.Generator().manual_seed(7)
    centers = torch.randn(2, d, generator=gen) * 0.01
    labels = torch.arange(40) % 2
    x = centers[labels] + 0.01 * torch.randn(40, d, generator=gen)
    mix = OnlineGaussianMixture(2, random_state=0, buffer_size=20).partial_fit(x)
    proba = mix.predict_proba(x)
    assert torch.isfinite(mix.score_samples(x)).all()
    assert torch.allclose(proba.sum(1), torch.ones(40, dtype=torch.float64))
    assert (proba.argmax(1) == mix.predict(x[:2]).repeat(20)).all()  # clusters separated


def test_not_fitted_errors_say_what_to_do():
    mix = OnlineGaussianMixture(3, buffer_size=30)
    mix.partial_fit(torch.randn(5, 2))
    with pytest.raises(NotFittedError, match="buffered 5 of the 30"):
        _ = mix.means_ if mix.is_fitted else mix.weights_
    mix.initialize()
    assert mix.means_.shape == (3, 2)
    with pytest.raises(ValueError, match="dimension"):
        mix.partial_fit(torch.randn(1, 3))
    with pytest.raises(ValueError, match="finite"):
        OnlineGaussianMixture(1).partial_fit(torch.tensor([[float("nan")]]))
