"""A prior from a zoo of already fine-tuned adapters, without meta-training (SPEC section 5): the maths.

Given ``N`` adapters ``theta_1..N`` (flattened, one per task), the prior is the ``K``-component
diagonal mixture that ``OnlineGaussianMixture(K, buffer_size=N)`` fits to them: all ``N`` adapters
form its initialisation buffer, so the mixture is exactly the k-means++ clustering of the adapters
(best of ``n_init`` restarts) with each component's weight, mean and variance taken from its cluster
(a single-adapter cluster takes the pooled within-cluster variance). The result is a
``LearnedPrior`` like the one meta-training writes (``source = "zoo"``), centred at the PEFT
initialisation, so ``liftpeft adapt`` uses it unchanged: the test-time prior is
``sum_j alpha_j N(theta; mu_j, Sigma_j + beta^2 I)``.

This module works on tensors only, so methods (Zoo-LiFT) use it; reading ``peft`` adapter
directories is ``liftpeft.peft_integration.zoo``. ``liftpeft.zoo`` offers both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from liftpeft.core.mixture import OnlineGaussianMixture
from liftpeft.core.structured import fit_structured_em
from liftpeft.learned_prior import LearnedPrior, adapter_blocks, structure_record


def fit_zoo_mixture(thetas: torch.Tensor, k: int, seed: int = 0) -> OnlineGaussianMixture:
    """The ``k``-component online mixture initialised from all rows of ``thetas`` ``(N, d)``."""
    if thetas.dim() != 2:
        raise ValueError(f"thetas must be (N, d), got shape {tuple(thetas.shape)}")
    n = thetas.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"a prior with k={k} components needs at least {k} adapters, got {n}; lower k")
    mixture = OnlineGaussianMixture(k, random_state=seed, buffer_size=n)
    return mixture.partial_fit(thetas)


def zoo_prior(
    thetas: torch.Tensor,
    center: torch.Tensor,
    *,
    k: int = 5,
    beta: float = 0.01,
    sigma: float = 0.01,
    seed: int = 0,
    backbone: dict[str, Any] | None = None,
    task_names: Sequence[str] = (),
    config: dict[str, Any] | None = None,
    spread: str = "fixed",
    tail_dof: float | None = None,
) -> LearnedPrior:
    """A ``LearnedPrior`` from adapters ``thetas`` ``(N, d)``; ``center`` ``(d,)`` is the PEFT initialisation.

    ``spread`` (``"tensor"``, ``"global"``, ``"coordinate"``) or ``tail_dof`` fit the structured
    prior instead (``fit_structured_em``: ``k`` clusters, a learned spread per block, Student-t
    components): the adapters' spread around their cluster's centre becomes the task spread.
    """
    if not beta > 0 or not sigma > 0:
        raise ValueError(f"beta and sigma must be > 0, got beta={beta}, sigma={sigma}")
    if center.shape != thetas.shape[1:]:
        raise ValueError(f"center has shape {tuple(center.shape)}, the adapters have d={thetas.shape[1]}")
    if spread != "fixed" or tail_dof is not None:
        return _structured_zoo_prior(
            thetas,
            center,
            k,
            beta,
            sigma,
            seed,
            dict(backbone or {}),
            list(task_names),
            config,
            spread,
            tail_dof,
        )
    mixture = fit_zoo_mixture(thetas, k, seed)
    return LearnedPrior.from_mixture(
        mixture,
        center,
        beta=beta,
        sigma=sigma,
        backbone=dict(backbone or {}),
        config={"k": k, "beta": beta, "sigma": sigma, "seed": seed, **(config or {})},
        task_names=list(task_names),
        source="zoo",
    )


def _structured_zoo_prior(
    thetas: torch.Tensor,
    center: torch.Tensor,
    k: int,
    beta: float,
    sigma: float,
    seed: int,
    backbone: dict[str, Any],
    task_names: list[str],
    config: dict[str, Any] | None,
    spread: str,
    tail_dof: float | None,
) -> LearnedPrior:
    blocks, block_names = adapter_blocks(spread, backbone, thetas.shape[1])
    post = fit_structured_em(
        thetas, k, blocks, beta=beta if spread == "fixed" else None, dof=tail_dof, seed=seed
    )
    names_or_index = task_names or [f"adapter-{i}" for i in range(thetas.shape[0])]
    structure = structure_record(
        spread_mode=spread,
        prior_beta=beta,
        block_names=block_names,
        spread=post["spread"],
        clusters=k,
        tail_dof=tail_dof,
        weights=post["weights"],
        assignments=post["assignments"],
        task_names=names_or_index,
        task_scale=post["task_scale"],
    )
    settings = {"k": k, "beta": beta, "sigma": sigma, "seed": seed, "spread": spread, "tail_dof": tail_dof}
    return LearnedPrior(
        weights=post["weights"],
        means=post["means"],
        covariances=post["covariances"],
        counts=post["weights"] * thetas.shape[0],
        center=center.detach().float().clone(),
        beta=float(post["spread"].double().mean().sqrt()) if spread != "fixed" else beta,
        sigma=sigma,
        task_variance=post["task_variance"] if spread != "fixed" else None,
        dof=tail_dof,
        structure=structure,
        backbone=backbone,
        config={**settings, **(config or {})},
        task_names=task_names,
        source="zoo",
    )
