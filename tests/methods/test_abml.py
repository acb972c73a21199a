"""ABML's Gaussian KL against ``torch.distributions.kl_divergence``."""

import torch
from torch.distributions import Normal, kl_divergence

from liftpeft.methods.abml import gaussian_kl


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mq, mp = (
        torch.randn(50, generator=g, dtype=torch.float64),
        torch.randn(50, generator=g, dtype=torch.float64),
    )
    lq, lp = (
        torch.randn(50, generator=g, dtype=torch.float64),
        torch.randn(50, generator=g, dtype=torch.float64),
    )
    expected = kl_divergence(Normal(mq, lq.exp()), Normal(mp, lp.exp())).sum()
    torch.testing.assert_close(gaussian_kl(mq, lq, mp, lp), expected, rtol=1e-12, atol=1e-12)
    assert float(gaussian_kl(mq, lq, mq, lq)) == 0.0
