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


class FakeHub:
    """Stands in for the Hub's write API (``HfApi.create_repo`` / ``create_branch`` / ``create_commit``):
    records the calls and, given a ``cache_dir``, lays each commit out there as the Hub cache would
    hold it after a download (the previous snapshot of the branch plus the added files)."""

    def __init__(self, cache_dir: Path | None = None):
        self.cache_dir = cache_dir
        self.calls: list[tuple[str, dict]] = []
        self.operations: list = []
        self.uploaded: dict[str, bytes] = {}

    def install(self, monkeypatch) -> FakeHub:
        from huggingface_hub import HfApi

        for name in ("create_repo", "create_branch", "create_commit"):
            monkeypatch.setattr(HfApi, name, lambda api, *a, _n=name, **kw: getattr(self, _n)(*a, **kw))
        return self

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

    def create_commit(self, repo_id, operations, **kwargs):
        self.calls.append(("create_commit", {"repo_id": repo_id, **kwargs}))
        self.operations = list(operations)
        self.uploaded = {}
        for op in self.operations:  # read now: the files may be temporary
            with open(op.path_or_fileobj, "rb") as handle:
                self.uploaded[op.path_in_repo] = handle.read()
        commit = f"{len(self.calls):040x}"
        if self.cache_dir is not None:
            repo = Path(self.cache_dir) / ("models--" + repo_id.replace("/", "--"))
            ref = repo / "refs" / (kwargs.get("revision") or "main")
            snapshot = repo / "snapshots" / commit
            if ref.is_file():
                shutil.copytree(repo / "snapshots" / ref.read_text(), snapshot)
            for path, data in self.uploaded.items():
                (snapshot / path).parent.mkdir(parents=True, exist_ok=True)
                (snapshot / path).write_bytes(data)
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.write_text(commit)
        url = f"https://huggingface.co/{repo_id}/commit/{commit}"
        return type("CommitInfo", (), {"commit_url": url, "oid": commit})()
