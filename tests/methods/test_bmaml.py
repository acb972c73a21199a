"""BMAML's SVGD pieces: the kernel's repulsive term against autograd, and the M = 1 limit (MAML)."""

import math

import pytest
import torch

from liftpeft.methods.bmaml import median_bandwidth, rbf_kernel, svgd_direction, svgd_inner_loop
from liftpeft.methods.meta_learning import sgd_inner_loop

from .quadratic import quadratic_family


def test_repulsion_is_the_kernel_gradient_from_autograd():
    """``repulsion_i = sum_j d/dx_j k(x_j, x_i)`` with ``k(x, y) = exp(-||x - y||^2 / h)``, h fixed."""
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    h = median_bandwidth(x)
    _, repulsion = rbf_kernel(x, h)
    for i in range(6):
        xs = x.clone().requires_grad_(True)
        total = torch.exp(-(xs - x[i].detach()).square().sum(1) / h).sum()  # sum_j k(x_j, x_i), x_i constant
        (grad,) = torch.autograd.grad(total, xs)
        torch.testing.assert_close(repulsion[i], grad.sum(0), rtol=1e-12, atol=1e-12)


def test_median_heuristic_and_kernel_values():
    x = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    # pairwise distances 3, 4, 5: median 4, h = 16 / log 3
    assert median_bandwidth(x) == pytest.approx(16 / math.log(3))
    kernel, _ = rbf_kernel(x, 2.0)
    assert kernel[1, 2] == pytest.approx(math.exp(-25 / 2.0))
    torch.testing.assert_close(kernel.diagonal(), torch.ones(3, dtype=torch.float64))
    assert median_bandwidth(x[:1]) == 1.0


def test_svgd_pushes_particles_apart_without_a_score():
    x = torch.tensor([[0.0, 0.0], [0.5, 0.0]], dtype=torch.float64)
    direction = svgd_direction(x, torch.zeros_like(x), bandwidth=1.0)
    assert direction[0, 0] < 0 < direction[1, 0]


def test_one_particle_svgd_is_sgd():
    task = quadratic_family(1, dim=3, seed=1, dtype=torch.float64)[0]
    theta = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
    idx = torch.arange(4)
    particles, _ = svgd_inner_loop(task, theta[None], idx, steps=3, lr=0.1, scale=8.0, differentiable=False)
    expected, _ = sgd_inner_loop(task, theta, idx, steps=3, lr=0.1, differentiable=False)
    torch.testing.assert_close(particles[0], expected.detach(), rtol=1e-12, atol=1e-12)
