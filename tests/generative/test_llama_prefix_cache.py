"""The prefix cache on a Llama-style causal LM equals the uncached forward (tiny random model)."""

from __future__ import annotations

import pytest
import torch

ATOL = 1e-5  # float32; the cached path only reorders the same operations


@pytest.fixture(scope="module")
def llama_backbones(tmp_path_factory):
    from liftpeft.peft_integration import PeftBackbone
    from liftpeft.peft_integration.tiny import make_tiny_model

    path = make_tiny_model("llama", tmp_path_factory.mktemp("tiny-llama") / "llama", layers=4)
    peft = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], "layers_to_transform": [2, 3]}
    cached = PeftBackbone(path, peft, prefix_cache=True)
    plain = PeftBackbone(path, peft, prefix_cache=False)
    return cached, plain


def _batch(tok):
    texts = ["a", "hello there", "hello there, general", "xyz 123"]  # different lengths: right padding
    rows = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tok.pad_token_id)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
    return ids, mask


def test_llama_stack_is_cached_above_the_lowest_adapted_layer(llama_backbones):
    cached, _ = llama_backbones
    assert cached.prefix_cache is not None
    assert cached.prefix_cache.stack.kind == "llama"
    assert cached.prefix_cache.split == 2


def test_cached_logits_and_gradients_equal_the_full_forward(llama_backbones):
    cached, plain = llama_backbones
    ids, mask = _batch(cached.tokenizer)
    theta = cached.theta0 + 0.05 * torch.randn(cached.dim, generator=torch.Generator().manual_seed(0))
    grads, logits = [], []
    for backbone in (cached, plain):
        leaf = theta.clone().requires_grad_(True)
        out = backbone.forward(leaf, input_ids=ids, attention_mask=mask).logits  # (B, T, V)
        keep = mask.bool()
        value = torch.log_softmax(out[keep], -1)[:, 5].sum()  # only real positions count
        (grad,) = torch.autograd.grad(value, leaf)
        grads.append(grad)
        logits.append(out.detach()[keep])
    assert len(cached.prefix_cache) == len(ids)
    assert torch.allclose(logits[0], logits[1], atol=ATOL), float((logits[0] - logits[1]).abs().max())
    assert torch.allclose(grads[0], grads[1], atol=ATOL), float((grads[0] - grads[1]).abs().max())


def test_a_row_cached_alone_matches_it_cached_in_a_padded_batch(llama_backbones):
    cached, _ = llama_backbones
    ids, mask = _batch(cached.tokenizer)
    theta = cached.theta0
    n = int(mask[0].sum())
    alone = cached.forward(theta, input_ids=ids[:1, :n], attention_mask=mask[:1, :n]).logits[0]
    batch = cached.forward(theta, input_ids=ids, attention_mask=mask).logits[0, :n]
    assert torch.allclose(alone, batch, atol=ATOL)


def test_gpt2_cached_logits_still_equal_the_full_forward(tmp_path):
    from liftpeft.peft_integration import PeftBackbone
    from liftpeft.peft_integration.tiny import make_tiny_model

    path = make_tiny_model("gpt2", tmp_path / "gpt2", layers=3)
    peft = {"r": 4, "lora_alpha": 8, "target_modules": ["c_attn"], "layers_to_transform": [2]}
    cached, plain = PeftBackbone(path, peft, prefix_cache=True), PeftBackbone(path, peft)
    ids, mask = _batch(cached.tokenizer)
    theta = cached.theta0 + 0.05 * torch.randn(cached.dim, generator=torch.Generator().manual_seed(1))
    keep = mask.bool()
    got = cached.forward(theta, input_ids=ids, attention_mask=mask).logits[keep]
    want = plain.forward(theta, input_ids=ids, attention_mask=mask).logits[keep]
    assert cached.prefix_cache.stack.kind == "gpt2"
    assert torch.allclose(got, want, atol=ATOL)


def test_weights_fingerprint_samples_tensors_larger_than_float32_counts_exactly():
    from liftpeft.peft_integration.backbone import weights_fingerprint

    big = torch.nn.Embedding(49152, 576)  # 28.3M elements, SmolLM2's embedding: linspace overshoots
    assert len(weights_fingerprint(big)) == 16
