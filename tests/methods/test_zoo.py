"""The zoo prior: a LearnedPrior fitted to existing peft adapters, usable by ``liftpeft adapt``."""

import json

import pytest
import torch

from liftpeft import api
from liftpeft.cli.main import main
from liftpeft.core.mixture import OnlineGaussianMixture
from liftpeft.data.synthetic import write_rule_family
from liftpeft.learned_prior import LearnedPrior
from liftpeft.peft_integration import BackboneMismatchError, PeftBackbone, export_adapter
from liftpeft.zoo import zoo_prior

N_ADAPTERS = 6


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, bert_backbone):
    """Six adapters in two planted groups, exported as peft directories: (folder, thetas (6, d))."""
    folder = tmp_path_factory.mktemp("zoo")
    g = torch.Generator().manual_seed(0)
    d = bert_backbone.dim
    centers = 0.5 * torch.randn(2, d, generator=g)
    thetas = torch.stack(
        [bert_backbone.theta0 + centers[i % 2] + 0.05 * torch.randn(d, generator=g) for i in range(6)]
    )
    for i, theta in enumerate(thetas):
        export_adapter(bert_backbone, theta, folder / f"adapter-{i}")
    return folder, thetas


def test_zoo_prior_equals_the_online_mixture_fitted_to_the_same_adapters(zoo, bert_backbone, tmp_path):
    folder, thetas = zoo
    prior = api.zoo_prior([folder], tmp_path / "prior", k=2, seed=3, quiet=True)
    reference = OnlineGaussianMixture(2, random_state=3, buffer_size=N_ADAPTERS).partial_fit(thetas)
    loaded = LearnedPrior.load(tmp_path / "prior")
    for got in (prior, loaded):
        assert torch.equal(got.weights, reference.weights_.float())
        assert torch.equal(got.means, reference.means_.float())
        assert torch.equal(got.covariances, reference.covariances_.float())
        assert torch.equal(got.center, bert_backbone.theta0)
    assert loaded.source == "zoo" and loaded.beta == 0.01 and loaded.sigma == 0.01
    assert loaded.task_names == [f"adapter-{i}" for i in range(N_ADAPTERS)]
    assert sorted(prior.weights.tolist()) == [0.5, 0.5]  # the two planted groups


def test_zoo_prior_of_tensors_checks_its_inputs():
    thetas = torch.randn(3, 5)
    with pytest.raises(ValueError, match="at least 4 adapters"):
        zoo_prior(thetas, torch.zeros(5), k=4)
    with pytest.raises(ValueError, match="center"):
        zoo_prior(thetas, torch.zeros(4), k=2)


@pytest.mark.parametrize(
    ("model_kind", "peft_config", "expected"),
    [("bert", {"r": 8, "lora_alpha": 16}, "rank differs"), ("gpt2", None, "base model")],
)
def test_zoo_prior_refuses_an_adapter_of_another_shape_or_base_model_naming_it(
    zoo, tiny_models, tmp_path, model_kind, peft_config, expected
):
    folder, _ = zoo
    other = PeftBackbone(tiny_models[model_kind], peft_config)
    odd = export_adapter(other, other.theta0, tmp_path / "the-odd-one")
    with pytest.raises(BackboneMismatchError, match=expected) as err:
        api.zoo_prior([folder, odd], tmp_path / "prior", k=2, quiet=True)
    assert "the-odd-one" in str(err.value)
    assert not (tmp_path / "prior").exists()


def test_plain_peft_adapters_without_liftpeft_metadata_are_accepted(zoo, tmp_path):
    folder, thetas = zoo
    plain = []
    for i in range(3):
        target = tmp_path / f"plain-{i}"
        target.mkdir()
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            (target / name).write_bytes((folder / f"adapter-{i}" / name).read_bytes())
        plain.append(target)
    prior = api.zoo_prior(plain, tmp_path / "prior", k=1, family="encoder", choice_head="cross", quiet=True)
    assert torch.allclose(prior.means[0], thetas[:3].mean(0), atol=1e-6)


def test_cli_zoo_prior_round_trip_then_adapt(zoo, tiny_models, tmp_path, capsys):
    folder, _ = zoo
    tasks = write_rule_family(tmp_path / "tasks", n_tasks=1, n_test_tasks=1, seed=0)
    args = [
        "zoo-prior",
        "--adapters",
        str(folder),
        "--k",
        "2",
        "--beta",
        "0.5",
        "--out",
        str(tmp_path / "prior"),
    ]
    assert main([*args, "--set", "adapt_steps=3", "--quiet"]) == 0
    assert "2 components" in capsys.readouterr().out
    stored = json.loads((tmp_path / "prior" / "prior.json").read_text())
    assert (
        stored["beta"] == 0.5
        and stored["config"]["adapt_steps"] == 3
        and len(stored["config"]["adapters"]) == 6
    )
    task = tasks / "test" / "task-000"
    adapt = [
        "adapt",
        "--prior",
        str(tmp_path / "prior"),
        "--task",
        str(task),
        "--out",
        str(tmp_path / "adapter"),
    ]
    assert main([*adapt, "--quiet"]) == 0
    metrics = api.evaluate(tiny_models["bert"], task, adapter=tmp_path / "adapter")
    assert 0.0 <= metrics["accuracy"] <= 1.0


def test_cli_zoo_prior_names_a_missing_adapter_folder(tmp_path, capsys):
    assert main(["zoo-prior", "--adapters", str(tmp_path / "nowhere"), "--out", str(tmp_path / "p")]) == 1
    assert "nowhere" in capsys.readouterr().err
