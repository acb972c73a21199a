"""A character-level Hugging Face tokenizer: every character is one token.

Ids: ``0`` is the pad token ``<pad>``, ``1`` the unknown token ``<unk>``, then the given characters
in sorted order. The tokenizer is a ``tokenizers`` word-level model behind a pre-tokenizer that
isolates every character and a ``Fuse`` decoder that joins tokens back without spaces, so
``decode(encode(s)) == s`` for any ``s`` made of known characters. Saved as ``tokenizer.json`` +
``tokenizer_config.json``; ``transformers.AutoTokenizer.from_pretrained(dir)`` loads it offline as a
fast tokenizer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers
from tokenizers.models import WordLevel

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN)


def char_vocab(chars: Iterable[str]) -> dict[str, int]:
    """``{token: id}``: the special tokens first, then the distinct characters sorted."""
    distinct = sorted(set(chars))
    bad = [c for c in distinct if len(c) != 1]
    if bad:
        raise ValueError(f"a character vocabulary holds single characters, got {bad[:5]}")
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for c in distinct:
        vocab[c] = len(vocab)
    return vocab


def build_char_tokenizer(chars: Iterable[str], model_max_length: int = 128) -> PreTrainedTokenizerFast:
    """A fast tokenizer giving each character of ``chars`` its own id (see the module docstring).

    ``model_max_length`` is recorded for users (the backbone's ``n_positions``); nothing truncates
    unless asked to.
    """
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(WordLevel(char_vocab(chars), unk_token=UNK_TOKEN))
    # `[\s\S]` rather than `.`: every character, newlines included, becomes its own piece.
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=UNK_TOKEN,
        pad_token=PAD_TOKEN,
        clean_up_tokenization_spaces=False,  # would turn "a ." into "a." and break round trips
        model_max_length=model_max_length,
    )


def save_char_tokenizer(tokenizer: PreTrainedTokenizerFast, folder: str | os.PathLike) -> Path:
    """Save ``tokenizer`` into ``folder``, naming the portable class in ``tokenizer_config.json``.

    Recent ``transformers`` write their internal backend class name there, which older releases
    cannot resolve; ``PreTrainedTokenizerFast`` loads in both.
    """
    folder = Path(folder)
    tokenizer.save_pretrained(folder)
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return folder
