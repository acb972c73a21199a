"""The arrow method scores a zoo with peft's own create_arrow_model: same forward, same loss."""

import pytest
import torch
from peft import ArrowConfig, create_arrow_model
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from liftpeft.data.synthetic import rule_family
from liftpeft.methods import build_method, scoring_objective
from liftpeft.peft_integration import PeftBackbone, PeftTaskObjective, export_adapter
from liftpeft.peft_integration.arrow import ArrowModel

MODEL_CLASS = {"gpt2": AutoModelForCausalLM, "t5": AutoModelForSeq2SeqLM}


@pytest.fixture(scope="module", params=["gpt2", "t5"])
def zoo(request, tiny_models, tmp_path_factory):
    kind = request.param
    backbone = PeftBackbone(tiny_models[kind])
    g = torch.Generator().manual_seed(0)
    experts = backbone.theta0 + 0.5 * torch.randn(4, backbone.dim, generator=g)
    folder = tmp_path_factory.mktemp(f"arrow-zoo-{kind}")
    dirs = [str(export_adapter(backbone, t, folder / f"e{i}")) for i, t in enumerate(experts)]
    task = PeftTaskObjective(backbone, rule_family(1, seed=0, n_train=4, n_dev=2, n_test=6)[0])
    return kind, backbone, experts, dirs, task


def _peft_alone(kind, model_path, dirs, seed):
    base = MODEL_CLASS[kind].from_pretrained(model_path)
    config = ArrowConfig(top_k=2, router_temperature=0.5, rng_seed=seed)
    return create_arrow_model(base, dirs, config).eval()


def test_arrow_forward_and_loss_equal_peft_create_arrow_model(zoo, tiny_models):
    kind, backbone, experts, dirs, task = zoo
    method = build_method("arrow", adapt_top_k=2, adapt_router_temperature=0.5)
    samples = method.adapt(experts, task, seed=3)
    assert torch.equal(samples, experts)  # Arrow's "adapter" is the zoo itself
    scoring = scoring_objective(method, task)
    reference = _peft_alone(kind, tiny_models[kind], dirs, seed=3)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 20, (2, 7), generator=g)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if kind == "t5":
        batch["decoder_input_ids"] = torch.randint(3, 20, (2, 5), generator=g)
    routed = scoring.routed(samples)
    with torch.no_grad():
        got = routed.backbone.forward(None, **batch).logits
        want = reference(**batch).logits
        assert torch.allclose(got, want, atol=1e-5)
        # routing is not one adapter: no single expert gives that forward
        for theta in experts:
            assert not torch.allclose(backbone.forward(theta, **batch).logits, want, atol=1e-4)
        # the task's loss and metrics on peft's model, through the same objective code
        on_peft = PeftTaskObjective(ArrowModel(backbone, reference), task.task)
        idx = torch.arange(4)
        assert torch.allclose(scoring.loss(samples, idx), on_peft.loss(experts[0], idx), atol=1e-5)
        assert scoring.evaluate(samples, "test") == pytest.approx(on_peft.evaluate(experts[0], "test"))


def test_arrow_leaves_the_backbone_untouched(zoo):
    _, backbone, experts, _, task = zoo
    before, rng = backbone.get_theta(), torch.get_rng_state()
    method = build_method("arrow", adapt_top_k=2)
    scoring_objective(method, task).evaluate(method.adapt(experts, task, seed=0), "test")
    assert torch.equal(backbone.get_theta(), before) and set(backbone.model.peft_config) == {"default"}
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_cross_encoder_head_outside_the_lora_layers_is_the_experts_mean(bert_backbone):
    # experts that differ only in their heads: routing over equal LoRA experts is that LoRA
    g = torch.Generator().manual_seed(0)
    names = bert_backbone.spec.names
    experts = bert_backbone.theta0.repeat(3, 1)
    for e in experts:
        parts = bert_backbone.spec.unflatten(e)
        for n in names:
            if "lora_B" in n or "lora_" not in n:
                parts[n].add_(torch.randn(parts[n].shape, generator=g) if "lora_" not in n else 0.3)
        e.copy_(bert_backbone.spec.flatten({n: parts[n] for n in names}))
    lora = [n for n in names if "lora_" in n]
    for e in experts[1:]:  # one LoRA part for all
        parts, first = bert_backbone.spec.unflatten(e), bert_backbone.spec.unflatten(experts[0])
        e.copy_(bert_backbone.spec.flatten({n: first[n] if n in lora else parts[n] for n in names}))
    task = PeftTaskObjective(bert_backbone, rule_family(1, seed=0, n_train=4, n_dev=2, n_test=6)[0])
    method = build_method("arrow", adapt_top_k=2)
    scoring = scoring_objective(method, task)
    samples = method.adapt(experts, task, seed=0)
    ids = torch.randint(3, 20, (3, 7), generator=g)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with torch.no_grad():
        got = scoring.routed(samples).backbone.forward(None, **batch).logits
        expected = bert_backbone.forward(experts.mean(0), **batch).logits  # the shared LoRA, the mean head
        assert torch.allclose(got, expected, atol=1e-5)
        assert not torch.allclose(bert_backbone.forward(experts[0], **batch).logits, expected, atol=1e-4)
