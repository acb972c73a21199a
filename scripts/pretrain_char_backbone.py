"""Pre-train the character-level GPT-2 backbone shipped in ``src/liftpeft/assets/char_gpt2``.

Data: the speech of the backbone plays (``liftpeft.data.shakespeare.BACKBONE_PLAYS``), parsed
exactly as the role tasks are, each play's speeches joined by single spaces. The last
``--heldout-fraction`` of every backbone play is held out; the rest is concatenated into one
training stream. No play that yields a task is read for training.

Objective: next-character cross-entropy on random windows of ``--seq-len + 1`` characters (every
position predicts the following character), AdamW, linear warm-up then cosine decay to 10 % of the
peak learning rate, gradient clipping, fixed seed, one CPU thread by default.

Reported (and written to ``pretraining.json`` next to the weights): loss / accuracy on fixed
training windows and on the held-out tails, both scored the way tasks are (non-overlapping
81-character windows, 80 predictions each), and zero-shot accuracy on meta-train role tasks.

Regenerate the shipped backbone (about 20 minutes on one CPU thread)::

    HF_HUB_OFFLINE=1 PYTHONPATH=src python scripts/pretrain_char_backbone.py \\
        --out src/liftpeft/assets/char_gpt2
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from liftpeft.data.char_tokenizer import (
    PAD_TOKEN,
    UNK_TOKEN,
    build_char_tokenizer,
    save_char_tokenizer,
)
from liftpeft.data.shakespeare import (
    BACKBONE_PLAYS,
    WINDOW,
    backbone_texts,
    build_shakespeare_tasks,
    char_vocabulary,
    cut_windows,
    load_plays,
)

logger = logging.getLogger("pretrain_char_backbone")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("src/liftpeft/assets/char_gpt2"))
    p.add_argument("--steps", type=int, default=2000, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128, help="tokens per training sequence (= n_positions)")
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    p.add_argument("--min-lr-ratio", type=float, default=0.1, help="final lr / peak lr (cosine)")
    p.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--heldout-fraction", type=float, default=0.1, help="tail of each play held out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--eval-windows", type=int, default=2000, help="fixed training windows scored")
    p.add_argument(
        "--zero-shot-tasks", type=int, default=0, help="meta-train tasks scored zero-shot (0 = all)"
    )
    return p.parse_args(argv)


def encode(text: str, vocab: dict[str, int]) -> torch.Tensor:
    unk = vocab[UNK_TOKEN]
    return torch.tensor([vocab.get(c, unk) for c in text], dtype=torch.long)


def lr_at(step: int, args: argparse.Namespace) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``lr * min_lr_ratio`` at the last step."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    floor = args.lr * args.min_lr_ratio
    return floor + 0.5 * (args.lr - floor) * (1 + math.cos(math.pi * min(progress, 1.0)))


@torch.no_grad()
def score_windows(model: GPT2LMHeadModel, windows: torch.Tensor, batch: int = 256) -> tuple[float, float]:
    """Mean next-char cross-entropy (nats) and accuracy over ``windows`` (N, L).

    Each window gives L-1 predictions: position t predicts character t+1.
    """
    model.eval()
    total_loss, total_correct, count = 0.0, 0, 0
    for i in range(0, len(windows), batch):
        chunk = windows[i : i + batch]  # (B, L)
        logits = model(chunk[:, :-1]).logits  # (B, L-1, V)
        targets = chunk[:, 1:]  # (B, L-1)
        total_loss += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").item()
        total_correct += (logits.argmax(-1) == targets).sum().item()
        count += targets.numel()
    model.train()
    return total_loss / count, total_correct / count


def task_windows(texts: Sequence[str], vocab: dict[str, int]) -> torch.Tensor:
    return torch.stack([encode(t, vocab) for t in texts])  # (N, 81)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    plays = load_plays()
    chars = char_vocabulary(plays)
    tokenizer = build_char_tokenizer(chars, model_max_length=args.seq_len)
    vocab = tokenizer.get_vocab()
    streams = backbone_texts(plays)
    train_parts, heldout_parts = [], []
    for name in BACKBONE_PLAYS:
        cut = int(len(streams[name]) * (1 - args.heldout_fraction))
        train_parts.append(streams[name][:cut])
        heldout_parts.append(streams[name][cut:])
    train_ids = encode(" ".join(train_parts), vocab)
    heldout_windows = task_windows([w for part in heldout_parts for w in cut_windows(part, WINDOW)], vocab)
    logger.info(
        "vocabulary %d tokens; %d training characters, %d held-out windows",
        len(vocab),
        len(train_ids),
        len(heldout_windows),
    )
    if tokenizer(" ".join(train_parts)[:100])["input_ids"] != train_ids[:100].tolist():
        raise RuntimeError("the tokenizer and the training encoder disagree; rebuild both")

    gen = torch.Generator().manual_seed(args.seed)
    starts = torch.randint(0, len(train_ids) - WINDOW, (args.eval_windows,), generator=gen)
    train_eval_windows = torch.stack([train_ids[s : s + WINDOW] for s in starts.tolist()])

    config = GPT2Config(
        vocab_size=len(vocab),
        n_positions=args.seq_len,
        n_embd=args.n_embd,
        n_layer=args.n_layer,
        n_head=args.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        pad_token_id=vocab[PAD_TOKEN],
        bos_token_id=None,
        eos_token_id=None,
    )
    model = GPT2LMHeadModel(config)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("GPT-2 %d layers x %d dims, %d parameters", args.n_layer, args.n_embd, n_params)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=args.lr,
        betas=(0.9, 0.95),
    )
    seq = args.seq_len + 1
    started, running = time.time(), 0.0
    model.train()
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args)
        idx = torch.randint(0, len(train_ids) - seq, (args.batch_size,), generator=gen)
        batch = torch.stack([train_ids[s : s + seq] for s in idx.tolist()])  # (B, T+1)
        logits = model(batch[:, :-1]).logits  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            heldout_now = score_windows(model, heldout_windows)[0]
            logger.info(
                "step %5d  loss %.4f (smoothed %.4f)  held-out %.4f  lr %.2e  %.0fs",
                step + 1,
                loss.item(),
                running,
                heldout_now,
                lr_at(step, args),
                time.time() - started,
            )
    train_seconds = time.time() - started

    train_loss, train_acc = score_windows(model, train_eval_windows)
    heldout_loss, heldout_acc = score_windows(model, heldout_windows)
    logger.info(
        "train %.4f nats, acc %.4f | held-out %.4f nats, acc %.4f",
        train_loss,
        train_acc,
        heldout_loss,
        heldout_acc,
    )

    tasks = build_shakespeare_tasks(plays)["train"]
    if args.zero_shot_tasks:
        tasks = tasks[: args.zero_shot_tasks]
    per_task = {}
    for task in tasks:
        loss_t, acc_t = score_windows(model, task_windows([e.text for e in task.test], vocab))
        per_task[task.name] = {"loss": round(loss_t, 4), "accuracy": round(acc_t, 4)}
    mean_acc = sum(v["accuracy"] for v in per_task.values()) / len(per_task)
    mean_loss = sum(v["loss"] for v in per_task.values()) / len(per_task)
    logger.info(
        "zero-shot on %d meta-train tasks (test windows): loss %.4f, accuracy %.4f",
        len(per_task),
        mean_loss,
        mean_acc,
    )

    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    save_char_tokenizer(tokenizer, args.out)
    report = {
        "backbone_plays": list(BACKBONE_PLAYS),
        "hyperparameters": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"
        },
        "parameters": n_params,
        "vocab_size": len(vocab),
        "train_characters": len(train_ids),
        "heldout_windows": len(heldout_windows),
        "train_seconds": round(train_seconds, 1),
        "train": {"loss": round(train_loss, 4), "accuracy": round(train_acc, 4)},
        "heldout": {"loss": round(heldout_loss, 4), "accuracy": round(heldout_acc, 4)},
        "zero_shot_meta_train": {
            "tasks": len(per_task),
            "mean_loss": round(mean_loss, 4),
            "mean_accuracy": round(mean_acc, 4),
            "per_task": per_task,
        },
        "torch": torch.__version__,
    }
    (args.out / "pretraining.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    logger.info("saved to %s", args.out)
    return report


if __name__ == "__main__":
    main()
