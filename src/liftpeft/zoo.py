"""A prior from a zoo of already fine-tuned adapters, without meta-training (SPEC section 5).

Given ``N`` adapters ``theta_1..N`` (flattened, one per task), the prior is the ``K``-component
diagonal mixture that ``OnlineGaussianMixture(K, buffer_size=N)`` fits to them: all ``N`` adapters
form its initialisation buffer, so the mixture is exactly the k-means++ clustering of the adapters
(best of ``n_init`` restarts) with each component's weight, mean and variance taken from its cluster
(a single-adapter cluster takes the pooled within-cluster variance). The result is a
``LearnedPrior`` like the one meta-training writes (``source = "zoo"``), centred at the PEFT
initialisation, so ``liftpeft adapt`` uses it unchanged: the test-time prior is
``sum_j alpha_j N(theta; mu_j, Sigma_j + beta^2 I)``.

``zoo_prior`` works on tensors; ``load_adapter_zoo`` reads ``peft`` adapter directories and refuses,
naming it, any adapter made for another base model or with another adapter shape.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from liftpeft.core.mixture import OnlineGaussianMixture
from liftpeft.learned_prior import LearnedPrior
from liftpeft.peft_integration import (
    BackboneMismatchError,
    PeftBackbone,
    adapter_to_theta,
    backbone_from_description,
    read_adapter_description,
)

ADAPTER_CONFIG = "adapter_config.json"


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
) -> LearnedPrior:
    """A ``LearnedPrior`` from adapters ``thetas`` ``(N, d)``; ``center`` ``(d,)`` is the PEFT initialisation."""
    if not beta > 0 or not sigma > 0:
        raise ValueError(f"beta and sigma must be > 0, got beta={beta}, sigma={sigma}")
    if center.shape != thetas.shape[1:]:
        raise ValueError(f"center has shape {tuple(center.shape)}, the adapters have d={thetas.shape[1]}")
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


def expand_adapter_dirs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Adapter directories from ``paths``: each is an adapter, or a folder whose sub-folders are adapters."""
    out: list[Path] = []
    for path in map(Path, paths):
        if (path / ADAPTER_CONFIG).is_file():
            out.append(path)
            continue
        children = (
            sorted(p for p in path.iterdir() if (p / ADAPTER_CONFIG).is_file()) if path.is_dir() else []
        )
        if not children:
            raise FileNotFoundError(
                f"{path} is neither a peft adapter directory (no {ADAPTER_CONFIG}) nor a folder of them"
            )
        out.extend(children)
    if not out:
        raise ValueError("no adapters given")
    return out


@dataclass
class AdapterZoo:
    """Adapters read into flat vectors: ``thetas`` ``(N, d)`` in the order of ``dirs``."""

    backbone: PeftBackbone
    thetas: torch.Tensor
    dirs: list[Path]

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dirs]


def _same_plain_base(first: dict[str, Any], desc: dict[str, Any], adapter: Path, reference: Path) -> None:
    """Adapters without liftpeft metadata: at least their recorded base models must agree."""
    if desc.get("config_fingerprint") is None and desc.get("model") != first.get("model"):
        raise BackboneMismatchError(
            f"adapter {adapter} was made for base model {desc.get('model')!r}, but {reference} for "
            f"{first.get('model')!r}; a zoo prior needs adapters of one base model and one adapter shape"
        )


def load_adapter_zoo(
    adapters: Sequence[str | os.PathLike],
    *,
    model: str | os.PathLike | None = None,
    family: str | None = None,
    choice_head: str | None = None,
) -> AdapterZoo:
    """Read adapter directories (or folders of them) into flat vectors on one backbone.

    The backbone is rebuilt from the first adapter's description (``model`` overrides where the base
    model is; ``family`` / ``choice_head`` fill in what plain ``peft`` adapters do not record); its
    PEFT initialisation (``PeftBackbone``'s default seed) is the prior's center. Every adapter must match it:
    ``BackboneMismatchError`` names the first one that does not.
    """
    dirs = expand_adapter_dirs(adapters)
    first = read_adapter_description(dirs[0])
    description = dict(first)
    if family is not None:
        description["family"] = family
    if choice_head is not None:
        description["choice_head"] = choice_head
    backbone = backbone_from_description(description, model=model)
    thetas = []
    for adapter in dirs:
        desc = read_adapter_description(adapter)
        _same_plain_base(first, desc, adapter, dirs[0])
        backbone.check_compatible(desc, what=f"adapter {adapter}")
        thetas.append(adapter_to_theta(backbone, adapter))
    return AdapterZoo(backbone, torch.stack(thetas), dirs)
