"""iMAML's implicit meta-gradient against finite differences of the proximal solution's query loss.

The inner solver is run to convergence (float64), so ``theta -> L_Q(phi*(theta))`` is a smooth
function whose central differences (step 1e-5) have error ~1e-10; conjugate gradient with ``d``
iterations solves ``(I + A/lam) v = g`` exactly. Tolerance: 1e-7 relative.
"""

import pytest
import torch

from liftpeft.methods.imaml import conjugate_gradient, imaml_meta_gradient, proximal_inner_loop

from .quadratic import quadratic_family, random_spd

DIM, LAM, LR, STEPS = 5, 0.7, 0.3, 100


def test_conjugate_gradient_solves_an_spd_system_in_d_steps():
    g = torch.Generator().manual_seed(0)
    a = random_spd(8, g, low=0.1, high=5.0)
    b = torch.randn(8, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, steps=8)
    torch.testing.assert_close(a @ x, b, rtol=0, atol=1e-10)


def test_proximal_inner_loop_converges_to_the_closed_form():
    task = quadratic_family(1, dim=DIM, seed=2, dtype=torch.float64)[0]
    theta = torch.linspace(-1, 1, DIM, dtype=torch.float64)
    support = torch.arange(4)
    a = task.curvature
    exact = torch.linalg.solve(
        a + LAM * torch.eye(DIM, dtype=torch.float64), a @ task.batch_mean(support) + LAM * theta
    )
    phi = proximal_inner_loop(task, theta, support, steps=STEPS, lr=LR, lam=LAM)
    torch.testing.assert_close(phi, exact, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_imaml_meta_gradient_matches_finite_differences(seed):
    task = quadratic_family(1, dim=DIM, seed=seed, dtype=torch.float64)[0]
    theta = torch.randn(DIM, generator=torch.Generator().manual_seed(seed + 10), dtype=torch.float64)
    support, query = torch.arange(0, 4), torch.arange(4, 8)

    def outer(th):
        phi = proximal_inner_loop(task, th, support, steps=STEPS, lr=LR, lam=LAM)
        return float(task.loss(phi, query))

    eps = 1e-5
    fd = torch.tensor(
        [
            (outer(theta + eps * e) - outer(theta - eps * e)) / (2 * eps)
            for e in torch.eye(DIM, dtype=torch.float64)
        ],
        dtype=torch.float64,
    )
    loss, grad = imaml_meta_gradient(task, theta, support, query, steps=STEPS, lr=LR, lam=LAM, cg_steps=DIM)
    torch.testing.assert_close(grad, fd, rtol=1e-7, atol=1e-9)
    assert loss == pytest.approx(outer(theta), rel=1e-12)
    # a truncated CG is an approximation, not another answer: one step is already close on this problem
    _, rough = imaml_meta_gradient(task, theta, support, query, steps=STEPS, lr=LR, lam=LAM, cg_steps=1)
    assert (rough - fd).norm() < 0.5 * fd.norm()
