"""The merge baselines run peft's own add_weighted_adapter: same tensors, same function as peft alone."""

import math

import pytest
import torch
from peft import PeftModel
from peft.utils import get_peft_model_state_dict
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from liftpeft.data.synthetic import rule_family
from liftpeft.methods import build_method
from liftpeft.peft_integration import PeftBackbone, PeftTaskObjective, export_adapter
from liftpeft.peft_integration.merge import merge_adapters

MODEL_CLASS = {"gpt2": AutoModelForCausalLM, "t5": AutoModelForSeq2SeqLM}
METHODS = {"merge-linear": "linear", "merge-ties": "ties", "merge-dare-ties": "dare_ties", "merge-svd": "svd"}
N = 3


@pytest.fixture(scope="module", params=["gpt2", "t5"])
def zoo(request, tiny_models, tmp_path_factory):
    """(kind, backbone, thetas (3, d), adapter dirs) on a tiny model."""
    kind = request.param
    backbone = PeftBackbone(tiny_models[kind])
    g = torch.Generator().manual_seed(0)
    thetas = backbone.theta0 + 0.3 * torch.randn(N, backbone.dim, generator=g)
    folder = tmp_path_factory.mktemp(f"merge-zoo-{kind}")
    dirs = [export_adapter(backbone, t, folder / f"a{i}") for i, t in enumerate(thetas)]
    return kind, backbone, thetas, dirs


def _peft_alone(kind, model_path, dirs, weights, combination_type, seed):
    """peft without liftpeft: a fresh base model, the adapters loaded from disk, merged, made active."""
    model = PeftModel.from_pretrained(
        MODEL_CLASS[kind].from_pretrained(model_path), dirs[0], adapter_name="a0"
    )
    for i, d in enumerate(dirs[1:], start=1):
        model.load_adapter(d, adapter_name=f"a{i}")
    torch.manual_seed(seed)
    model.add_weighted_adapter(
        [f"a{i}" for i in range(len(dirs))], weights, "m", combination_type=combination_type, density=0.5
    )
    model.set_adapter("m")
    return model.eval()


def _batch(kind):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 20, (2, 7), generator=g)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if kind == "t5":
        batch["decoder_input_ids"] = torch.randint(3, 20, (2, 5), generator=g)
    return batch


@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_merge_baseline_equals_peft_add_weighted_adapter(name, zoo, tiny_models):
    kind, backbone, thetas, dirs = zoo
    task = PeftTaskObjective(backbone, rule_family(1, seed=0, n_train=4, n_dev=2, n_test=4)[0])
    method = build_method(name, adapt_weights="uniform")
    ours = method.adapt(thetas, task, seed=7)[0]
    reference = _peft_alone(kind, tiny_models[kind], dirs, [1 / N] * N, METHODS[name], seed=7)
    # the same tensors, flattened in the backbone's order: peft's merged A and B, times
    # sqrt(scaling_merged / scaling_backbone) = sqrt(1 / (lora_alpha / r)) (peft's merge has alpha = r)
    merged = get_peft_model_state_dict(reference, adapter_name="m")
    factor = math.sqrt(1.0 / (backbone.peft_config.lora_alpha / backbone.peft_config.r))
    expected = {n: merged[n.replace(".default", "")] * factor for n in backbone.spec.names}
    assert torch.allclose(ours, backbone.spec.flatten(expected), atol=1e-6)
    # and the same function: the backbone at our vector is peft's merged model
    batch = _batch(kind)
    with torch.no_grad():
        got = backbone.forward(ours, **batch).logits
        want = reference(**batch).logits
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, backbone.forward(thetas[0], **batch).logits, atol=1e-3)


def test_merging_leaves_the_backbone_as_it_was(zoo):
    _, backbone, thetas, _ = zoo
    before = backbone.get_theta()
    adapters = set(backbone.model.peft_config)
    rng = torch.get_rng_state()
    merge_adapters(backbone, thetas, [0.5, 0.3, 0.2], "dare_ties", density=0.5)
    assert torch.equal(backbone.get_theta(), before) and set(backbone.model.peft_config) == adapters
    assert torch.equal(torch.get_rng_state(), rng)  # DARE's seeded draws leave the caller's stream alone


def test_the_support_grid_merges_the_best_1_2_4_and_all():
    from liftpeft.methods.zoo_merge import grid_sizes

    assert grid_sizes(1) == [1] and grid_sizes(3) == [1, 2, 3] and grid_sizes(10) == [1, 2, 4, 8, 10]


def test_support_weights_keep_the_merge_of_lowest_support_loss(zoo):
    _, backbone, thetas, _ = zoo
    task = PeftTaskObjective(backbone, rule_family(1, seed=0, n_train=4, n_dev=2, n_test=4)[0])
    uniform = build_method("merge-linear").adapt(thetas, task, seed=0)[0]
    chosen = build_method("merge-linear", adapt_weights="support").adapt(thetas, task, seed=0)[0]
    full = torch.arange(4)
    with torch.no_grad():
        assert float(task.loss(chosen, full)) <= float(task.loss(uniform, full)) + 1e-6


def test_the_cross_encoder_head_is_the_weighted_mean_of_the_heads(bert_backbone):
    g = torch.Generator().manual_seed(0)
    thetas = bert_backbone.theta0 + torch.randn(2, bert_backbone.dim, generator=g)
    merged = bert_backbone.spec.unflatten(merge_adapters(bert_backbone, thetas, [0.75, 0.25], "linear"))
    zoo = [bert_backbone.spec.unflatten(t) for t in thetas]
    head = [n for n in bert_backbone.spec.names if "lora_" not in n]
    assert head
    for n in head:
        assert torch.allclose(merged[n], 0.75 * zoo[0][n] + 0.25 * zoo[1][n], atol=1e-6)


def test_a_task_without_peft_merges_is_refused_with_what_to_use():
    from .quadratic import quadratic_family

    task = quadratic_family(1)[0]
    with pytest.raises(TypeError, match="PeftTaskObjective"):
        build_method("merge-ties").adapt(torch.zeros(2, 4), task, seed=0)


def test_every_zoo_method_builds_the_same_zoo_from_the_same_settings():
    from liftpeft.methods import MetaProblem

    from .quadratic import quadratic_family

    problem = MetaProblem(quadratic_family(4, seed=0), torch.zeros(4))
    settings = dict(task_steps=5, task_lr=0.1, task_batch_size=4)
    zoos = [
        build_method(n, **settings).meta_train(problem, seed=2) for n in ("merge-ties", "lorahub", "arrow")
    ]
    assert zoos[0].shape == (4, 4) and all(torch.equal(zoos[0], z) for z in zoos[1:])


def test_the_uniform_merge_is_computed_once_per_zoo_and_seed(zoo, monkeypatch):
    _, backbone, thetas, _ = zoo
    task = PeftTaskObjective(backbone, rule_family(1, seed=0, n_train=4, n_dev=2, n_test=4)[0])
    method = build_method("merge-linear", adapt_weights="uniform")
    calls = []
    merge = type(method).merge
    monkeypatch.setattr(type(method), "merge", lambda self, *a, **k: calls.append(1) or merge(self, *a, **k))
    first = method.adapt(thetas, task, seed=3)
    assert torch.equal(method.adapt(thetas, task, seed=3), first) and len(calls) == 1
    method.adapt(thetas, task, seed=4)  # another seed (DARE's masks): merged again
    method.adapt(thetas.clone(), task, seed=4)  # another zoo object: merged again
    assert len(calls) == 3
