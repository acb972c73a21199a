"""zoo-prior --adapters HUB_ID: adapters read from a local Hub cache laid out as the Hub lays it out."""

import shutil

import pytest
import torch

from liftpeft import api
from liftpeft.peft_integration import PeftBackbone, export_adapter
from liftpeft.peft_integration.zoo import expand_adapter_dirs

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path, tiny_models, monkeypatch):
    """A Hub cache holding alice/gpt2-zoo (two adapters in sub-folders) and bob/one-adapter."""
    import huggingface_hub.constants

    backbone = PeftBackbone(tiny_models["gpt2"])
    g = torch.Generator().manual_seed(0)
    made = tmp_path / "made"
    cache = tmp_path / "hub-cache"
    layout = {"alice/gpt2-zoo": ["task-a", "task-b"], "bob/one-adapter": [""]}
    thetas = {}
    for repo, subs in layout.items():
        root = cache / f"models--{repo.replace('/', '--')}"
        (root / "refs").mkdir(parents=True)
        (root / "refs" / "main").write_text(COMMIT)
        for sub in subs:
            theta = backbone.theta0 + 0.1 * torch.randn(backbone.dim, generator=g)
            source = export_adapter(backbone, theta, made / repo / (sub or "root"))
            target = root / "snapshots" / COMMIT / sub
            target.mkdir(parents=True, exist_ok=True)
            for f in source.iterdir():
                if not f.name.startswith("."):
                    shutil.copy(f, target / f.name)
            thetas[f"{repo}/{sub}".rstrip("/")] = theta
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return thetas


def test_hub_ids_are_read_from_the_hub_cache(hub_cache, tmp_path):
    prior = api.zoo_prior(["alice/gpt2-zoo", "bob/one-adapter"], tmp_path / "prior", k=1, quiet=True)
    assert prior.task_names == ["task-a", "task-b", "bob/one-adapter"]
    assert torch.allclose(prior.means[0], torch.stack(list(hub_cache.values())).mean(0), atol=1e-6)


def test_a_sub_folder_and_a_revision_select_one_adapter(hub_cache):
    (one,) = expand_adapter_dirs([f"alice/gpt2-zoo/task-b@{COMMIT}"])
    assert one.name == "task-b" and COMMIT in str(one)


def test_an_unknown_hub_id_is_refused_with_what_to_do(hub_cache, tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a local folder nor a Hub repository"):
        api.zoo_prior(["carol/no-such-zoo"], tmp_path / "prior", k=1, quiet=True)
    assert not (tmp_path / "prior").exists()
