"""Multi-LoRA: shared A / per-task B index sets, the parameter count, parallel training, LiFT on B."""

import pytest
import torch
from transformers import AutoModel

from liftpeft.methods import build_method
from liftpeft.methods.multilora import LoraParts, multilora_parameter_counts
from liftpeft.peft_integration import PeftBackbone

RANK = 4


def linear_shapes(model_dir, targets):
    """(in, out) of every targeted nn.Linear of the plain transformers model (no peft involved)."""
    model = AutoModel.from_pretrained(model_dir)
    return [
        (m.in_features, m.out_features)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and name.split(".")[-1] in targets
    ]


@pytest.mark.parametrize("k", [1, 3, 10])
def test_trainable_parameter_count_equals_the_formula(tiny_models, k):
    backbone = PeftBackbone(
        tiny_models["bert"], {"r": RANK, "target_modules": ["query", "value"]}, choice_head="similarity"
    )
    shapes = linear_shapes(tiny_models["bert"], {"query", "value"})
    d_a = sum(RANK * fan_in for fan_in, _ in shapes)  # every A is r x in
    d_b = sum(fan_out * RANK for _, fan_out in shapes)  # every B is out x r
    counts = multilora_parameter_counts(backbone.spec, k)
    assert (counts.d_shared, counts.d_task) == (d_a, d_b)
    assert counts.multilora_total == d_a + k * d_b
    assert counts.multilora_trainable == k * d_b
    assert counts.lora_per_task == k * (d_a + d_b) == k * backbone.dim
    assert (
        multilora_parameter_counts(backbone.spec, k, train_shared_a=True).multilora_trainable == d_a + k * d_b
    )


def test_parts_split_every_lora_target_and_put_heads_with_the_task(bert_backbone, tiny_models):
    parts = LoraParts.from_spec(bert_backbone.spec)
    offsets = bert_backbone.spec.offsets()
    heads = sum(stop - start for name, (start, stop) in offsets.items() if "lora" not in name)
    assert heads > 0  # the cross-encoder's scoring head
    assert parts.d_shared + parts.d_task == bert_backbone.dim
    assert torch.equal(
        torch.sort(torch.cat([parts.shared, parts.task])).values, torch.arange(bert_backbone.dim)
    )
    assert (bert_backbone.theta0[parts.shared] != 0).all()  # A random at initialisation
    ia3 = PeftBackbone(
        tiny_models["bert"],
        {"peft_type": "IA3", "target_modules": ["query", "value"], "feedforward_modules": []},
    )
    with pytest.raises(ValueError, match="lora_A"):
        LoraParts.from_spec(ia3.spec)


def test_parallel_training_shares_a_frozen_or_trained_a(tiny_problem):
    problem, held_out = tiny_problem
    parts = LoraParts.from_description(problem.description)
    frozen = build_method("multilora", meta_steps=3, adapt_steps=3, mixed_precision="bf16")
    state = frozen.meta_train(problem, seed=0)
    assert torch.equal(state.shared, problem.theta0[parts.shared])
    assert state.task_parts.shape == (len(problem.train), parts.d_task)
    assert not torch.equal(state.task_parts[0], state.task_parts[1])
    adapted = frozen.adapt(state, held_out[0], seed=0)[0]
    assert torch.equal(adapted[parts.shared], state.shared) and not torch.equal(adapted, problem.theta0)
    trained = build_method("multilora", meta_steps=3, train_shared_a=True, tasks_per_step=2).meta_train(
        problem, seed=0
    )
    assert not torch.equal(trained.shared, problem.theta0[parts.shared])


def test_lift_on_the_b_part_keeps_a_fixed(tiny_problem):
    problem, held_out = tiny_problem
    parts = LoraParts.from_description(problem.description)
    lift = build_method(
        "lift-multilora",
        k=1,
        sigma=1.0,
        beta=1.0,
        tau=1e-3,
        steps=12,
        warmup_steps=4,
        burnin_steps=4,
        thin=2,
        batch_size=8,
        adapt_steps=3,
        adapt_keep_last=2,
    )
    state = lift.meta_train(problem, seed=0)
    assert state.prior.dim == parts.d_task
    samples = lift.adapt(state, held_out[0], seed=0)
    assert samples.shape == (2, problem.dim)
    assert torch.equal(samples[:, parts.shared], problem.theta0[parts.shared].expand(2, -1))
