"""Tiny random models with a character tokenizer, built locally (no hub): for tests, docs and smoke runs.

``make_tiny_model(kind, path)`` writes a ``transformers`` model directory (``config.json``,
``model.safetensors``, ``tokenizer.json``) that ``AutoModel*.from_pretrained`` and
``AutoTokenizer.from_pretrained`` load offline. Kinds: ``"bert"`` (encoder), ``"gpt2"`` (causal LM),
``"llama"`` (causal LM with rotary positions and grouped-query attention, like SmolLM2), ``"t5"``
(encoder-decoder, as FLAN-T5), ``"bart"`` (encoder-decoder, as BART-base), ``"vit"`` (a ViT image
encoder, as ViT-B/16, with its image processor instead of a tokenizer).
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

CHARS = string.ascii_letters + string.digits + string.punctuation + " \n"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "</s>"]


def char_tokenizer(chars: str = CHARS, bert_style: bool = False):
    """A fast tokenizer with one token per character (plus special tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tok.decoder = decoders.Fuse()
    if bert_style:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
        )
    kwargs = dict(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")
    if bert_style:
        kwargs.update(cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    else:
        kwargs.update(eos_token="</s>")
    return PreTrainedTokenizerFast(**kwargs)


def make_tiny_model(kind: str, path: str | Path, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """Write a tiny random ``kind`` model (``bert`` / ``gpt2`` / ``llama`` / ``t5`` / ``bart``) with a char
    tokenizer, or a tiny ``vit`` with its image processor."""
    if kind == "vit":
        return _make_tiny_vit(Path(path), seed, hidden, layers)
    from transformers import (
        BartConfig,
        BartForConditionalGeneration,
        BertConfig,
        BertModel,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        T5Config,
        T5ForConditionalGeneration,
    )

    path = Path(path)
    tokenizer = char_tokenizer(bert_style=(kind == "bert"))
    vocab = len(tokenizer)
    pad = tokenizer.pad_token_id
    torch.manual_seed(seed)
    if kind == "bert":
        config = BertConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=2,
            intermediate_size=2 * hidden,
            max_position_embeddings=256,
            pad_token_id=pad,
        )
        model = BertModel(config)
    elif kind == "gpt2":
        eos = tokenizer.eos_token_id
        config = GPT2Config(
            vocab_size=vocab,
            n_embd=hidden,
            n_layer=layers,
            n_head=2,
            n_positions=256,
            bos_token_id=eos,
            eos_token_id=eos,
            pad_token_id=pad,
        )
        model = GPT2LMHeadModel(config)
    elif kind == "llama":
        eos = tokenizer.eos_token_id
        config = LlamaConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            bos_token_id=eos,
            eos_token_id=eos,
            pad_token_id=pad,
            tie_word_embeddings=True,
        )
        model = LlamaForCausalLM(config)
    elif kind == "t5":
        config = T5Config(
            vocab_size=vocab,
            d_model=hidden,
            d_kv=hidden // 2,
            d_ff=2 * hidden,
            num_layers=layers,
            num_heads=2,
            pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=pad,
        )
        model = T5ForConditionalGeneration(config)
    elif kind == "bart":
        eos = tokenizer.eos_token_id
        config = BartConfig(
            vocab_size=vocab,
            d_model=hidden,
            encoder_layers=layers,
            decoder_layers=layers,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=2 * hidden,
            decoder_ffn_dim=2 * hidden,
            max_position_embeddings=256,
            pad_token_id=pad,
            bos_token_id=eos,
            eos_token_id=eos,
            decoder_start_token_id=eos,
            forced_eos_token_id=eos,
        )
        model = BartForConditionalGeneration(config)
    else:
        raise ValueError(f"unknown tiny model kind {kind!r}; choose bert, gpt2, llama, t5, bart or vit")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _make_tiny_vit(path: Path, seed: int, hidden: int, layers: int, image_size: int = 32) -> Path:
    """A tiny random ``ViTModel`` (patch 8 on 32 px images) and a ``ViTImageProcessor`` that resizes to
    32 px with ViT's 0.5 / 0.5 normalisation."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=image_size,
        patch_size=8,
        num_channels=3,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
    )
    ViTModel(config, add_pooling_layer=False).save_pretrained(path)
    size = {"height": image_size, "width": image_size}
    ViTImageProcessor(size=size, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(path)
    return path
