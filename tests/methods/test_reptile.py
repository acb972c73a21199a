"""Reptile's meta-update against its definition ``theta <- theta + eps (phi_task - theta)``.

With one training task and full-batch inner steps (``meta_batch_size`` >= the split), the task's
SGD iterate has the closed form ``phi = abar + (I - alpha A)^k (theta - abar)``, so two meta-steps of
the real training loop can be recomputed by hand. Tolerance 1e-6 (float32 arithmetic).
"""

import torch

from liftpeft.methods import MetaProblem, build_method

from .quadratic import quadratic_family

EPS, ALPHA, K = 0.25, 0.1, 3


def test_reptile_update_is_its_definition():
    task = quadratic_family(1, dim=4, seed=5, n_train=6)[0]
    theta0 = torch.tensor([0.5, -1.0, 0.0, 2.0])
    problem = MetaProblem([task], theta0)
    reptile = build_method(
        "reptile", meta_steps=2, meta_lr=EPS, inner_steps=K, inner_lr=ALPHA, meta_batch_size=64
    )
    assert reptile.config.meta_optimizer == "sgd"
    learned = reptile.meta_train(problem, seed=0)

    abar = task.batch_mean()
    contraction = torch.linalg.matrix_power(torch.eye(4) - ALPHA * task.curvature, K)
    theta = theta0.clone()
    for _ in range(2):
        phi = abar + contraction @ (theta - abar)
        theta = theta + EPS * (phi - theta)
    torch.testing.assert_close(learned, theta, rtol=1e-6, atol=1e-6)
