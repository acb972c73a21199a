import pytest
import torch
from peft import PeftModel
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
)

from liftpeft.peft_integration import (
    BackboneMismatchError,
    ModelLoadError,
    PeftBackbone,
    adapter_to_theta,
    export_adapter,
)

CASES = [  # (model kind, choice head, class that loads the exported adapter's base)
    ("bert", "cross", lambda p: AutoModelForSequenceClassification.from_pretrained(p, num_labels=1)),
    ("bert", "similarity", AutoModel.from_pretrained),
    ("gpt2", "cross", AutoModelForCausalLM.from_pretrained),
    ("t5", "cross", AutoModelForSeq2SeqLM.from_pretrained),
]


def inputs(kind):
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(6, 60, (2, 11), generator=gen)
    extra = {"decoder_input_ids": ids[:, :4]} if kind == "t5" else {}
    return {"input_ids": ids, **extra}


@pytest.mark.parametrize(("kind", "head", "_"), CASES)
def test_theta_round_trip_is_identity(tiny_models, kind, head, _):
    backbone = PeftBackbone(tiny_models[kind], choice_head=head)
    theta = torch.randn(backbone.dim, generator=torch.Generator().manual_seed(1))
    backbone.set_theta(theta)
    assert torch.equal(backbone.get_theta(), theta)
    assert backbone.dim == backbone.spec.dim == sum(backbone.spec.numels)


@pytest.mark.parametrize(("kind", "head", "_"), CASES)
def test_functional_forward_equals_the_module_holding_theta(tiny_models, kind, head, _):
    backbone = PeftBackbone(tiny_models[kind], choice_head=head)
    theta = backbone.theta0 + 0.1 * torch.randn(backbone.dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        functional = backbone.forward(theta, **inputs(kind))
        backbone.set_theta(theta)
        module = backbone.model(**inputs(kind))
    key = "last_hidden_state" if head == "similarity" else "logits"
    assert torch.allclose(functional[key], module[key], atol=1e-6)
    assert not torch.allclose(functional[key], backbone.forward(backbone.theta0, **inputs(kind))[key])


@pytest.mark.parametrize(("kind", "head", "load_base"), CASES)
def test_exported_adapter_loads_in_peft_with_the_same_outputs(tiny_models, tmp_path, kind, head, load_base):
    backbone = PeftBackbone(tiny_models[kind], choice_head=head)
    theta = backbone.theta0 + 0.1 * torch.randn(backbone.dim, generator=torch.Generator().manual_seed(3))
    out = export_adapter(backbone, theta, tmp_path / "adapter")
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    peft_model = PeftModel.from_pretrained(load_base(str(tiny_models[kind])), out).eval()
    key = "last_hidden_state" if head == "similarity" else "logits"
    with torch.no_grad():
        ours = backbone.forward(theta, **inputs(kind))[key]
        theirs = peft_model(**inputs(kind))[key]
    assert (ours - theirs).abs().max().item() <= 1e-5
    assert torch.equal(adapter_to_theta(backbone, out), theta)
    assert torch.equal(backbone.get_theta(), backbone.theta0)  # exporting leaves the module untouched


def test_target_parameters_work(tiny_models, tmp_path):
    backbone = PeftBackbone(
        tiny_models["gpt2"], {"r": 2, "target_modules": [], "target_parameters": ["attn.c_attn.weight"]}
    )
    assert backbone.dim > 0 and all("c_attn" in n for n in backbone.spec.names)
    theta = backbone.theta0 + 0.1 * torch.randn(backbone.dim, generator=torch.Generator().manual_seed(4))
    export_adapter(backbone, theta, tmp_path / "a")
    peft_model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(str(tiny_models["gpt2"])), tmp_path / "a"
    )
    with torch.no_grad():
        diff = peft_model.eval()(**inputs("gpt2")).logits - backbone.forward(theta, **inputs("gpt2")).logits
    assert diff.abs().max().item() <= 1e-5


def test_adapter_of_another_shape_is_refused_by_name(tiny_models, tmp_path):
    rank8 = PeftBackbone(tiny_models["gpt2"], {"r": 8, "lora_alpha": 16})
    export_adapter(rank8, rank8.theta0, tmp_path / "rank8")
    rank4 = PeftBackbone(tiny_models["gpt2"])
    with pytest.raises(BackboneMismatchError, match="rank8"):
        adapter_to_theta(rank4, tmp_path / "rank8")


def test_unknown_model_gives_an_offline_message():
    with pytest.raises(ModelLoadError, match=r"not a local directory.*local model directory"):
        PeftBackbone("no-such-org/no-such-model")


def test_description_catches_a_different_base_model(tiny_models):
    gpt2 = PeftBackbone(tiny_models["gpt2"])
    with pytest.raises(BackboneMismatchError, match="base model"):
        PeftBackbone(tiny_models["t5"]).check_compatible(gpt2.describe())
    gpt2.check_compatible(PeftBackbone(tiny_models["gpt2"]).describe())  # same model: fine
