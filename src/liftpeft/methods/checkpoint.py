"""Checkpoints of a meta-training run (LiFT's chain, the meta-learners' outer loop).

Tensors go to safetensors, everything else to JSON.

A checkpoint is a directory ``checkpoint/`` swapped in atomically, so a run killed at any moment
leaves the previous complete checkpoint behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from liftpeft.atomic import atomic_directory, save_tensors

_SEP = "/"


def _split(state: dict[str, Any], prefix: str = "") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Separate a nested state dict into flat ``{"a/b": tensor}`` and a JSON-able remainder."""
    tensors: dict[str, torch.Tensor] = {}
    rest: dict[str, Any] = {}
    for key, value in state.items():
        name = f"{prefix}{key}"
        if isinstance(value, torch.Tensor):
            tensors[name] = value.detach().cpu().contiguous()
        elif isinstance(value, dict):
            sub_t, sub_r = _split(value, name + _SEP)
            tensors.update(sub_t)
            rest[key] = sub_r
        else:
            rest[key] = value
    return tensors, rest


def _join(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(json.dumps(rest))
    for name, value in tensors.items():
        node = state
        *parents, leaf = name.split(_SEP)
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return state


def save_checkpoint(folder: str | os.PathLike, state: dict[str, Any]) -> Path:
    tensors, rest = _split(state)
    with atomic_directory(folder) as tmp:
        save_tensors(tensors, tmp / "state.safetensors")
        (tmp / "state.json").write_text(json.dumps(rest, indent=1, sort_keys=True))
    return Path(folder)


def load_checkpoint(folder: str | os.PathLike) -> dict[str, Any]:
    folder = Path(folder)
    if not (folder / "state.json").is_file() or not (folder / "state.safetensors").is_file():
        raise FileNotFoundError(f"no checkpoint in {folder}")
    return _join(
        load_file(str(folder / "state.safetensors")), json.loads((folder / "state.json").read_text())
    )
