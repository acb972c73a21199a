"""Exported adapters carry a peft model card and load with PeftModel.from_pretrained from a Hub layout."""

from __future__ import annotations

import shutil

import torch
from huggingface_hub import ModelCard

from liftpeft.peft_integration.backbone import PeftBackbone
from liftpeft.peft_integration.export import export_adapter
from tests.hub.conftest import lay_out_hub_cache

SHA_MODEL = "a" * 40
SHA_ADAPTER = "b" * 40


def test_an_adapter_of_a_hub_model_loads_from_the_hub_cache_offline(tiny_models, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cache = tmp_path / "hub"
    snapshot = lay_out_hub_cache(cache, "acme/tiny-gpt2", tiny_models["gpt2"], SHA_MODEL)
    backbone = PeftBackbone(snapshot)  # the base model as transformers sees a Hub model: a snapshot
    theta = backbone.theta0 + 0.1 * torch.randn(backbone.dim, generator=torch.Generator().manual_seed(0))
    adapter = export_adapter(
        backbone, theta, tmp_path / "adapter", metadata={"method": "lift", "adapted_on": "t1"}
    )

    card = ModelCard.load(adapter / "README.md")
    assert card.data.library_name == "peft"
    assert card.data.base_model == "acme/tiny-gpt2"
    tags = set(card.data.tags)
    assert {"liftpeft", "lora", "base_model:adapter:acme/tiny-gpt2"} <= tags
    assert not [t for t in tags if "/tmp" in t or str(tmp_path) in t]  # no local paths leak into tags
    assert "adapted on task `t1`" in card.text and "AutoPeftModel.from_pretrained" in card.text

    lay_out_hub_cache(cache, "acme/tiny-gpt2-lift-adapter", adapter, SHA_ADAPTER)
    base = AutoModelForCausalLM.from_pretrained("acme/tiny-gpt2", cache_dir=cache)
    loaded = PeftModel.from_pretrained(base, "acme/tiny-gpt2-lift-adapter", cache_dir=cache, revision="main")
    loaded.eval()
    ids = torch.tensor([[5, 9, 14, 20, 7, 3]])
    with torch.no_grad():
        expected = backbone.forward(theta, input_ids=ids).logits
        got = loaded(input_ids=ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_an_adapter_of_a_local_model_names_no_base_model(tiny_models, tmp_path):
    local = shutil.copytree(tiny_models["gpt2"], tmp_path / "my-model")
    backbone = PeftBackbone(local)
    adapter = export_adapter(backbone, backbone.theta0, tmp_path / "adapter")
    card = ModelCard.load(adapter / "README.md")
    assert card.data.library_name == "peft"
    assert card.data.base_model is None  # a local path: the Hub would refuse it as base_model
    assert not [t for t in card.data.tags if t.startswith("base_model:")]
    assert str(backbone.model_ref) in card.text
