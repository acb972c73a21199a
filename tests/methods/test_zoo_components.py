"""zoo-prior writes each mixture component as a plain peft adapter with a generated model card."""

import torch
from huggingface_hub import ModelCard
from peft import PeftModel
from transformers import AutoModelForCausalLM

from liftpeft import api
from liftpeft.learned_prior import LearnedPrior
from liftpeft.peft_integration import PeftBackbone, adapter_to_theta, export_adapter


def test_components_are_peft_adapters_with_a_model_card(tiny_models, tmp_path):
    backbone = PeftBackbone(tiny_models["gpt2"])
    g = torch.Generator().manual_seed(0)
    for i in range(4):
        shift = 1.0 if i % 2 else -1.0
        theta = backbone.theta0 + shift + 0.05 * torch.randn(backbone.dim, generator=g)
        export_adapter(backbone, theta, tmp_path / "zoo" / f"task-{i}")
    prior = api.zoo_prior([tmp_path / "zoo"], tmp_path / "prior", k=2, quiet=True)
    assert LearnedPrior.load(tmp_path / "prior").n_components == 2  # the standard artefact
    for j in range(2):
        folder = tmp_path / "prior" / "components" / f"component-{j}"
        # peft alone loads it, and it holds the component's mean
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_models["gpt2"]), folder)
        assert model.peft_config["default"].r == 4
        assert torch.allclose(adapter_to_theta(backbone, folder), prior.means[j], atol=1e-6)
        card = ModelCard.load(folder / "README.md")
        assert card.data.library_name == "peft" and card.data.base_model == str(tiny_models["gpt2"])
        assert (
            all(f"`task-{i}`" in card.text for i in range(4))
            and f"weight: {float(prior.weights[j]):.4f}" in card.text
        )
    again = api.zoo_prior([tmp_path / "zoo"], tmp_path / "prior", k=1, overwrite=True, quiet=True)
    assert again.n_components == 1
    assert sorted(p.name for p in (tmp_path / "prior" / "components").iterdir()) == ["component-0"]
