"""MAML, FO-MAML and Bootstrapped MAML meta-gradients against closed forms on quadratic tasks.

On a quadratic task ``grad L_B(theta) = A (theta - abar_B)`` and ``H = A``, so ``k`` SGD steps give
``theta_k = abar_S + M^k (theta - abar_S)`` with ``M = I - alpha A``, and

    MAML:     dL_Q(theta_k)/dtheta = M^k A (theta_k - abar_Q)
    FO-MAML:  A (theta_k - abar_Q)
    BMAML-L:  target = abar_Q + M^L (theta_k - abar_Q);  d/dtheta 1/2||theta_k - target||^2 = M^k (theta_k - target)

Everything in float64; tolerance 1e-10 (relative to the gradient's norm).
"""

import pytest
import torch

from liftpeft.methods.bootstrapped_maml import bootstrapped_meta_gradient
from liftpeft.methods.maml import maml_meta_gradient
from liftpeft.methods.meta_learning import support_query

from .quadratic import quadratic_family

ALPHA = 0.3


@pytest.fixture
def setup():
    task = quadratic_family(1, dim=5, seed=3, n_train=10, dtype=torch.float64)[0]
    theta = torch.randn(5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    support, query = torch.arange(0, 4), torch.arange(4, 10)
    eye = torch.eye(5, dtype=torch.float64)
    return task, theta, support, query, eye - ALPHA * task.curvature


def adapted(task, theta, support, m, k):
    abar = task.batch_mean(support)
    return abar + torch.linalg.matrix_power(m, k) @ (theta - abar)


@pytest.mark.parametrize("k", [1, 2])
def test_maml_meta_gradient_equals_the_closed_form(setup, k):
    task, theta, support, query, m = setup
    theta_k = adapted(task, theta, support, m, k)
    expected = torch.linalg.matrix_power(m, k) @ task.curvature @ (theta_k - task.batch_mean(query))
    loss, grad = maml_meta_gradient(task, theta, support, query, steps=k, lr=ALPHA, first_order=False)
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)
    assert loss == pytest.approx(float(task.loss(theta_k, query)), rel=1e-12)


@pytest.mark.parametrize("k", [1, 2])
def test_fo_maml_meta_gradient_is_the_query_gradient_at_the_adapted_point(setup, k):
    task, theta, support, query, m = setup
    theta_k = adapted(task, theta, support, m, k)
    expected = task.curvature @ (theta_k - task.batch_mean(query))
    _, grad = maml_meta_gradient(task, theta, support, query, steps=k, lr=ALPHA, first_order=True)
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)
    _, second = maml_meta_gradient(task, theta, support, query, steps=k, lr=ALPHA, first_order=False)
    assert (grad - second).norm() > 0.1 * grad.norm()  # the Hessian terms matter here


@pytest.mark.parametrize(("k", "horizon"), [(1, 1), (2, 3)])
def test_bootstrapped_meta_gradient_equals_the_closed_form(setup, k, horizon):
    task, theta, support, query, m = setup
    theta_k = adapted(task, theta, support, m, k)
    abar_q = task.batch_mean(query)
    target = abar_q + torch.linalg.matrix_power(m, horizon) @ (theta_k - abar_q)
    expected = torch.linalg.matrix_power(m, k) @ (theta_k - target)
    _, grad = bootstrapped_meta_gradient(
        task,
        theta,
        support,
        query,
        steps=k,
        lr=ALPHA,
        bootstrap_steps=horizon,
        bootstrap_lr=ALPHA,
        first_order=False,
    )
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)
    if horizon == 1:  # one bootstrap step: alpha times MAML's meta-gradient
        _, maml = maml_meta_gradient(task, theta, support, query, steps=k, lr=ALPHA, first_order=False)
        torch.testing.assert_close(grad, ALPHA * maml, rtol=1e-10, atol=1e-12)


def test_support_and_query_batches_are_disjoint():
    g = torch.Generator().manual_seed(0)
    s, q = support_query(40, 16, g)
    assert len(s) == len(q) == 16 and not set(s.tolist()) & set(q.tolist())
    s, q = support_query(10, 16, g)  # a small split is halved
    assert len(s) == len(q) == 5 and sorted(s.tolist() + q.tolist()) == list(range(10))
    s, q = support_query(1, 16, g)
    assert s.tolist() == q.tolist() == [0]
