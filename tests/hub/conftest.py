"""Fixtures for the Hub and Trainer tests: a tiny GPT-2 backbone, priors over its adapter, and
directories laid out as the Hugging Face Hub cache lays them out (no network anywhere)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from liftpeft.learned_prior import LearnedPrior


def lay_out_hub_cache(
    cache_dir: Path, repo_id: str, folder: Path, commit: str, refs: tuple[str, ...] = ("main",)
) -> Path:
    """Copy ``folder`` into ``cache_dir`` as the snapshot ``commit`` of model repo ``repo_id``
    (``models--owner--name/snapshots/<commit>/...``, each ref in ``refs/<name>``), the layout
    ``snapshot_download`` / ``hf_hub_download`` read with ``HF_HUB_OFFLINE=1``."""
    repo = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    shutil.copytree(folder, snapshot, ignore=shutil.ignore_patterns(".*"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)
    return snapshot


def make_prior(backbone, k: int = 2, variance: float = 1e-4, beta: float = 0.01, seed: int = 0, **kw):
    """A ``LearnedPrior`` over ``backbone``'s adapter: K means spread around its PEFT initialisation."""
    g = torch.Generator().manual_seed(seed)
    d = backbone.dim
    means = backbone.theta0[None] + 0.05 * torch.randn(k, d, generator=g)
    covariances = variance * (0.5 + torch.rand(k, d, generator=g))
    weights = torch.softmax(torch.randn(k, generator=g), 0)
    return LearnedPrior(
        weights=weights,
        means=means,
        covariances=covariances,
        center=backbone.theta0.clone(),
        beta=beta,
        sigma=0.01,
        backbone=backbone.describe(),
        config={"k": k, "beta": beta, "adapt_steps": 3, "adapt_step_size": 1e-6, "preconditioner": None},
        task_names=[f"task-{i:03d}" for i in range(5)],
        **kw,
    )


@pytest.fixture(scope="session")
def gpt2_backbone(tiny_models):
    from liftpeft.peft_integration.backbone import PeftBackbone

    return PeftBackbone(tiny_models["gpt2"])


@pytest.fixture(scope="session")
def gpt2_prior(gpt2_backbone):
    return make_prior(gpt2_backbone)
