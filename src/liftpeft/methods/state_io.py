"""Saving and loading any method's meta-trained state: tensors in safetensors, the rest in JSON.

A state is a tensor, a ``LearnedPrior``, a dataclass, or a dict / list / tuple of these, scalars and
``None`` (and ``torch.Generator`` s). A top-level ``LearnedPrior`` keeps its own format
(``prior.json`` + ``prior.safetensors``, siblings of other K in ``k{K}/``). Everything else goes to
``state.safetensors`` (every tensor, keyed by its path in the state) and ``state.json``
(``format_version``, the SHA-256 of the tensor file, and the state's tree with ``{"__tensor__": key}``
leaves and ``{"__type__": ClassName, "fields": ...}`` for dataclasses). Class names are resolved only
against the classes the method declares (``state_types``); nothing is unpickled or imported by name.

Both files are written to temporaries and renamed, the JSON last: a torn write leaves a JSON whose
hash does not match the tensors (or no JSON), and ``load_state`` treats it as absent.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from liftpeft.atomic import sha256_file, write_tensors_with_json
from liftpeft.learned_prior import META_FILE, LearnedPrior, PriorFormatError

logger = logging.getLogger(__name__)

FORMAT = "liftpeft-state"
FORMAT_VERSION = 1
STATE_JSON = "state.json"
STATE_TENSORS = "state.safetensors"
_SCALARS = (bool, int, float, str, type(None))


class StateFormatError(ValueError):
    """A saved state that cannot be read back (unknown class, torn write, newer format)."""


def _encode(value: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    if isinstance(value, torch.Tensor):
        if path in tensors:
            raise ValueError(f"two tensors of the state map to the key {path!r}")
        tensors[path] = value.detach().cpu().contiguous().clone()
        return {"__tensor__": path}
    if isinstance(value, torch.Generator):
        tensors[path] = value.get_state().clone()
        return {"__generator__": path}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            f.name: _encode(getattr(value, f.name), tensors, f"{path}.{f.name}")
            for f in dataclasses.fields(value)
        }
        return {"__type__": type(value).__name__, "fields": fields}
    if isinstance(value, dict):
        plain = all(isinstance(k, str) and not k.startswith("__") for k in value)
        if plain:
            return {k: _encode(v, tensors, f"{path}.{k}") for k, v in value.items()}
        return {
            "__dict__": [
                [_encode(k, tensors, f"{path}.key{i}"), _encode(v, tensors, f"{path}.{i}")]
                for i, (k, v) in enumerate(value.items())
            ]
        }
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(value)]
    if isinstance(value, _SCALARS):
        return value
    raise TypeError(f"cannot save a {type(value).__name__} in a method state (at {path})")


def _decode(node: Any, tensors: dict[str, torch.Tensor], types: dict[str, type]) -> Any:
    if isinstance(node, list):
        return [_decode(v, tensors, types) for v in node]
    if not isinstance(node, dict):
        return node
    if "__tensor__" in node:
        return tensors[node["__tensor__"]]
    if "__generator__" in node:
        generator = torch.Generator()
        generator.set_state(tensors[node["__generator__"]])
        return generator
    if "__tuple__" in node:
        return tuple(_decode(v, tensors, types) for v in node["__tuple__"])
    if "__dict__" in node:
        return {_decode(k, tensors, types): _decode(v, tensors, types) for k, v in node["__dict__"]}
    if "__type__" in node:
        name = node["__type__"]
        if name not in types:
            raise StateFormatError(
                f"the state holds a {name}, which is not among the method's declared state types "
                f"({', '.join(sorted(types)) or 'none'})"
            )
        cls = types[name]
        values = {k: _decode(v, tensors, types) for k, v in node["fields"].items()}
        init = {f.name for f in dataclasses.fields(cls) if f.init}
        obj = cls(**{k: v for k, v in values.items() if k in init})
        for key, value in values.items():
            if key not in init:
                object.__setattr__(obj, key, value)
        return obj
    return {k: _decode(v, tensors, types) for k, v in node.items()}


def _type_table(state_types: Iterable[type]) -> dict[str, type]:
    table: dict[str, type] = {}
    for cls in state_types:
        if dataclasses.is_dataclass(cls):
            if cls.__name__ in table and table[cls.__name__] is not cls:
                raise ValueError(f"two declared state types are named {cls.__name__}")
            table[cls.__name__] = cls
    return table


def save_state(folder: str | os.PathLike, state: Any) -> Path:
    """Write ``state`` into ``folder`` (other files there, e.g. a run's checkpoints, are kept)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(state, LearnedPrior):
        for old in folder.glob("k*"):
            if (
                old.is_dir()
                and (old / META_FILE).is_file()
                and old.name[1:] not in {str(k) for k in state.siblings}
            ):
                shutil.rmtree(old)
        for k, sibling in state.siblings.items():
            sibling.save(folder / f"k{k}")
        state.save(folder)  # its JSON is written last
        return folder
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, tensors, "state")
    write_tensors_with_json(
        folder,
        STATE_TENSORS,
        STATE_JSON,
        tensors,
        lambda sha: {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "tensors_sha256": sha,
            "state": tree,
        },
    )
    return folder


def load_state(folder: str | os.PathLike, state_types: Iterable[type] = ()) -> Any | None:
    """The state saved in ``folder``; ``None`` if there is none or it is torn (logged)."""
    folder = Path(folder)
    try:
        if (folder / STATE_JSON).is_file():
            return _load_tree(folder, _type_table(state_types))
        if (folder / META_FILE).is_file():
            prior = LearnedPrior.load(folder)
            prior.siblings = {
                int(p.name[1:]): LearnedPrior.load(p)
                for p in sorted(folder.glob("k*"))
                if p.name[1:].isdigit() and (p / META_FILE).is_file()
            }
            return prior
        if (folder / STATE_TENSORS).is_file():  # written by liftpeft <= 0.x: a bare tensor
            tensors = load_file(str(folder / STATE_TENSORS))
            return tensors["state"] if set(tensors) == {"state"} else None
    except (PriorFormatError, StateFormatError, OSError, ValueError, KeyError) as err:
        logger.warning("ignoring the saved state in %s: %s", folder, err)
    return None


def _load_tree(folder: Path, types: dict[str, type]) -> Any:
    meta = json.loads((folder / STATE_JSON).read_text())
    if meta.get("format") != FORMAT or int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise StateFormatError(
            f"{folder / STATE_JSON}: unknown format {meta.get('format')!r} v{meta.get('format_version')}"
        )
    tensor_file = folder / STATE_TENSORS
    if not tensor_file.is_file() or meta.get("tensors_sha256") != sha256_file(tensor_file):
        raise StateFormatError(f"{tensor_file} does not match {STATE_JSON} (an interrupted write?)")
    return _decode(meta["state"], load_file(str(tensor_file)), types)
