"""Zoo validation: each mismatch is refused up front, with one sentence naming the adapter, writing nothing."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from liftpeft import api
from liftpeft.cli.main import main
from liftpeft.peft_integration import PeftBackbone, export_adapter
from liftpeft.peft_integration.tiny import make_tiny_model
from liftpeft.peft_integration.zoo_check import ZooMismatchError

WEIGHTS = "adapter_model.safetensors"


@pytest.fixture(scope="module")
def gpt2_zoo(tmp_path_factory, tiny_models):
    """Three liftpeft-written adapters on the tiny GPT-2: (folder, backbone)."""
    folder = tmp_path_factory.mktemp("gpt2-zoo")
    backbone = PeftBackbone(tiny_models["gpt2"])
    g = torch.Generator().manual_seed(0)
    for i in range(3):
        export_adapter(
            backbone, backbone.theta0 + 0.1 * torch.randn(backbone.dim, generator=g), folder / f"a{i}"
        )
    return folder, backbone


def _plain_copy(source, target):
    """A foreign peft adapter: the two peft files only, no liftpeft.json."""
    target.mkdir()
    for name in ("adapter_config.json", WEIGHTS):
        shutil.copy(source / name, target / name)
    return target


def _rename_base(adapter, name):
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = name
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    meta = adapter / "liftpeft.json"
    if meta.is_file():
        data = json.loads(meta.read_text())
        data["backbone"]["model"] = name
        meta.write_text(json.dumps(data))


def _odd_base_model(zoo, tiny_models, tmp_path):
    other = PeftBackbone(tiny_models["t5"])
    return export_adapter(other, other.theta0, tmp_path / "odd")


def _odd_weights(zoo, tiny_models, tmp_path):
    # the same architecture and the same recorded name, fine-tuned on other weights (another revision)
    other = PeftBackbone(make_tiny_model("gpt2", tmp_path / "gpt2-v2", seed=1))
    odd = export_adapter(other, other.theta0, tmp_path / "odd")
    _rename_base(odd, str(tiny_models["gpt2"]))
    return odd


def _odd_rank(zoo, tiny_models, tmp_path):
    other = PeftBackbone(tiny_models["gpt2"], {"r": 8, "lora_alpha": 8})
    return export_adapter(other, other.theta0, tmp_path / "odd")


def _odd_peft_type(zoo, tiny_models, tmp_path):
    other = PeftBackbone(
        tiny_models["gpt2"], {"peft_type": "IA3", "target_modules": ["c_attn"], "feedforward_modules": []}
    )
    return export_adapter(other, other.theta0, tmp_path / "odd")


def _missing_tensor(zoo, tiny_models, tmp_path):
    odd = _plain_copy(zoo[0] / "a0", tmp_path / "odd")
    tensors = load_file(odd / WEIGHTS)
    tensors.pop(sorted(tensors)[0])
    save_file(tensors, odd / WEIGHTS)
    return odd


def _extra_tensor(zoo, tiny_models, tmp_path):
    odd = _plain_copy(zoo[0] / "a0", tmp_path / "odd")
    tensors = load_file(odd / WEIGHTS)
    tensors["base_model.model.transformer.h.7.attn.c_attn.lora_A.weight"] = torch.zeros(4, 32)
    save_file(tensors, odd / WEIGHTS)
    return odd


def _wrong_shape(zoo, tiny_models, tmp_path):
    odd = _plain_copy(zoo[0] / "a0", tmp_path / "odd")
    tensors = load_file(odd / WEIGHTS)
    key = sorted(tensors)[0]
    tensors[key] = torch.zeros(tensors[key].shape[0], tensors[key].shape[1] + 1)
    save_file(tensors, odd / WEIGHTS)
    return odd


def _pickled_only(zoo, tiny_models, tmp_path):
    odd = _plain_copy(zoo[0] / "a0", tmp_path / "odd")
    (odd / WEIGHTS).rename(odd / "adapter_model.bin")
    return odd


CASES = {
    "base model": (_odd_base_model, "was made for base model"),
    "weights": (_odd_weights, "weights differ"),
    "rank": (_odd_rank, "rank differs"),
    "peft type": (_odd_peft_type, "is a IA3 adapter"),
    "missing tensor": (_missing_tensor, "1 tensors missing"),
    "extra tensor": (_extra_tensor, "1 tensors the model has no place for"),
    "shape": (_wrong_shape, "of shape"),
    "pickled weights": (_pickled_only, "never unpickles"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_mismatch_is_refused_naming_the_adapter_and_writes_nothing(
    case, gpt2_zoo, tiny_models, tmp_path
):
    make, expected = CASES[case]
    odd = make(gpt2_zoo, tiny_models, tmp_path)
    with pytest.raises(ZooMismatchError, match=expected) as err:
        api.zoo_prior([gpt2_zoo[0], odd], tmp_path / "prior", k=1, quiet=True)
    message = str(err.value)
    assert str(odd) in message and message.count(". ") == 0, message  # one sentence, naming it
    assert not (tmp_path / "prior").exists()


def test_the_cli_refuses_a_mismatch_with_the_sentence_and_exit_code_1(
    gpt2_zoo, tiny_models, tmp_path, capsys
):
    odd = _odd_rank(gpt2_zoo, tiny_models, tmp_path)
    out = tmp_path / "prior"
    assert main(["zoo-prior", "--adapters", str(gpt2_zoo[0]), str(odd), "--k", "1", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "r=8" in err and "not padded" in err and str(odd) in err
    assert not out.exists()


def test_a_foreign_adapter_of_the_same_base_name_and_shape_is_accepted(gpt2_zoo, tmp_path):
    folder, backbone = gpt2_zoo
    plain = _plain_copy(folder / "a1", tmp_path / "plain")
    prior = api.zoo_prior([folder / "a0", plain], tmp_path / "prior", k=1, quiet=True)
    assert prior.means.shape == (1, backbone.dim)
