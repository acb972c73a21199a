"""Tasks described by sentence embeddings of their inputs, compared by cosine similarity.

A task's key is the L2-normalised mean of the (normalised) sentence embeddings of its training
inputs, so the dot product of two keys is the cosine similarity of the tasks (LoRA-Retriever).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from liftpeft.objective import TaskObjective, TextEmbedder, default_embedder, require_texts


def resolve_embedder(embedder: TextEmbedder | None) -> TextEmbedder:
    """``embedder``, or when ``None`` the registered default (``liftpeft.objective.default_embedder``).

    The PEFT layer registers all-MiniLM-L6-v2, loaded offline from its package, when it is imported.
    """
    return embedder if embedder is not None else default_embedder()


def task_keys(
    tasks: Sequence[TaskObjective], embedder: TextEmbedder, method: str, split: str = "train"
) -> torch.Tensor:
    """One unit-norm key per task, ``(N, D)``: the normalised mean embedding of its ``split`` inputs."""
    keys = []
    for task in tasks:
        texts = require_texts(task, method).example_texts(split)
        if not texts:
            raise ValueError(f"task {task.name!r} has no {split} examples to describe it by")
        emb = F.normalize(torch.as_tensor(embedder(texts)).float(), dim=-1)  # (n, D)
        keys.append(F.normalize(emb.mean(0), dim=0))
    return torch.stack(keys)


def most_similar(query: torch.Tensor, keys: torch.Tensor, k: int | None) -> torch.Tensor:
    """Indices of the ``k`` keys ``(N, D)`` most cosine-similar to ``query`` ``(D,)``, best first (all if None)."""
    sims = keys @ query  # (N,)
    k = keys.shape[0] if k is None else min(k, keys.shape[0])
    return torch.topk(sims, k).indices


def letter_count_embedder(texts: Sequence[str]) -> torch.Tensor:
    """A dependency-free stand-in for a sentence embedder (tests, smoke runs): letter counts, ``(n, 26)``."""
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    counts = [[text.lower().count(c) for c in alphabet] for text in texts]
    return torch.tensor(counts, dtype=torch.float32) + 0.1  # never the zero vector
