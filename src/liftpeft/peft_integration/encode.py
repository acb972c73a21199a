"""Tokenise task examples once, then collate index batches into padded tensors.

Each ``Encoded*`` class holds one split of one task as lists of token-id tensors and builds the
model inputs for a batch of example indices. Shapes: ``B`` examples, ``R`` option rows, ``T`` tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from liftpeft.tasks.schema import ChoiceExample, Example, PairExample, TextExample

IGNORE = -100


def _ids(tokenizer, text: str, special: bool = False) -> list[int]:
    return tokenizer(text, add_special_tokens=special)["input_ids"]


def _pad(seqs: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    out = torch.full((len(seqs), width), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


def _eos(tokenizer) -> list[int]:
    return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []


@dataclass
class EncodedTokens:
    """Token-level targets: language modelling, or text-to-text (causal: target after the input).

    ``inputs[i]`` are model input ids; ``labels[i]`` the ids to predict (``IGNORE`` where nothing is
    predicted); for seq2seq ``decoder`` holds the target ids.
    """

    inputs: list[list[int]]
    labels: list[list[int]]
    seq2seq: bool
    pad_id: int

    def __len__(self) -> int:
        return len(self.inputs)

    def batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = idx.tolist()
        input_ids = _pad([self.inputs[i] for i in rows], self.pad_id)
        attention = _pad([[1] * len(self.inputs[i]) for i in rows], 0)
        labels = _pad([self.labels[i] for i in rows], IGNORE)
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


@dataclass
class EncodedChoices:
    """Multiple choice: one row per (example, option); ``owner[r]`` is the example of row ``r``.

    For ``mode="loglik"`` a row's score is the mean log-probability of its option tokens
    (``labels`` mark them); for ``"cross"`` it is the classifier output on the (input, option) pair;
    for ``"similarity"`` the scaled cosine between input and option embeddings.
    """

    mode: str  # "loglik" | "cross" | "similarity"
    seq2seq: bool
    rows: list[list[int]]  # per option row: model input ids
    row_labels: list[list[int]]  # loglik: target ids per row; similarity: option ids
    row_starts: list[int]  # first row of each example; example i owns rows[row_starts[i]:row_starts[i+1]]
    labels: list[int]
    pad_id: int

    def __len__(self) -> int:
        return len(self.labels)

    def row_ranges(self, idx: torch.Tensor) -> list[range]:
        return [range(self.row_starts[i], self.row_starts[i + 1]) for i in idx.tolist()]

    def batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        ranges = self.row_ranges(idx)
        rows = [r for rng in ranges for r in rng]
        sizes = [len(rng) for rng in ranges]
        out = {
            "n_options": torch.tensor(sizes),
            "label": torch.tensor([self.labels[i] for i in idx.tolist()]),
        }
        if self.mode == "similarity":
            inputs = [
                self.rows[rng.start] for rng in ranges
            ]  # the input is stored on each example's first row
            out["input_ids"] = _pad(inputs, self.pad_id)
            out["attention_mask"] = _pad([[1] * len(s) for s in inputs], 0)
            options = [self.row_labels[r] for r in rows]
            out["option_ids"] = _pad(options, self.pad_id)
            out["option_mask"] = _pad([[1] * len(s) for s in options], 0)
            return out
        out["input_ids"] = _pad([self.rows[r] for r in rows], self.pad_id)
        out["attention_mask"] = _pad([[1] * len(self.rows[r]) for r in rows], 0)
        if self.mode == "loglik":
            out["labels"] = _pad([self.row_labels[r] for r in rows], IGNORE)
        return out


def encode_tokens(tokenizer, examples: Sequence[Example], seq2seq: bool, max_length: int) -> EncodedTokens:
    inputs, labels = [], []
    for ex in examples:
        if isinstance(ex, TextExample):
            if seq2seq:
                raise ValueError(
                    "language-modelling tasks ({'text': ...}) need a causal LM, not an encoder-decoder"
                )
            ids = _ids(tokenizer, ex.text)[:max_length]
            inputs.append(ids)
            labels.append(ids)  # the model shifts: every next token is predicted
        elif isinstance(ex, PairExample):
            src, tgt = _ids(tokenizer, ex.input), _ids(tokenizer, ex.target) + _eos(tokenizer)
            if seq2seq:
                inputs.append(src[:max_length])
                labels.append(tgt[:max_length])
            else:
                tgt = tgt[:max_length]
                src = src[-(max_length - len(tgt)) :] if len(tgt) < max_length else []
                inputs.append(src + tgt)
                labels.append([IGNORE] * len(src) + tgt)
        else:
            raise TypeError(f"expected text or text-to-text examples, got {type(ex).__name__}")
    pad = tokenizer.pad_token_id
    return EncodedTokens(inputs, labels, seq2seq, pad if pad is not None else 0)


def encode_choices(
    tokenizer, examples: Sequence[ChoiceExample], mode: str, seq2seq: bool, max_length: int
) -> EncodedChoices:
    rows: list[list[int]] = []
    row_labels: list[list[int]] = []
    starts = [0]
    for ex in examples:
        if not isinstance(ex, ChoiceExample):
            raise TypeError(f"expected choice examples, got {type(ex).__name__}")
        if mode == "cross":
            for opt in ex.options:
                enc = tokenizer(ex.input, opt, truncation="only_first", max_length=max_length)
                rows.append(enc["input_ids"])
                row_labels.append([])
        elif mode == "similarity":
            src = tokenizer(ex.input, truncation=True, max_length=max_length)["input_ids"]
            for opt in ex.options:
                rows.append(src)
                row_labels.append(tokenizer(opt, truncation=True, max_length=max_length)["input_ids"])
        elif seq2seq:
            src = _ids(tokenizer, ex.input)[:max_length]
            for opt in ex.options:
                rows.append(src)
                row_labels.append((_ids(tokenizer, opt) + _eos(tokenizer))[:max_length])
        else:  # causal: option tokens follow the input; only they are scored
            ctx = _ids(tokenizer, ex.input)
            for opt in ex.options:
                opt_ids = _ids(tokenizer, opt if opt.startswith(" ") else " " + opt)[: max_length - 1]
                keep = ctx[-(max_length - len(opt_ids)) :]
                rows.append(keep + opt_ids)
                row_labels.append([IGNORE] * len(keep) + opt_ids)
        starts.append(len(rows))
    pad = tokenizer.pad_token_id
    return EncodedChoices(
        mode, seq2seq, rows, row_labels, starts, [ex.label for ex in examples], pad if pad is not None else 0
    )


def encode_texts(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each text on its own (with the model's special tokens), truncated."""
    return [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]


def pad_texts(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids (B, T), attention_mask (B, T))`` of token-id lists, right-padded."""
    return _pad(ids, pad_id), _pad([[1] * len(s) for s in ids], 0)
