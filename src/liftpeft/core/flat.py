"""A flat-vector view of a named set of tensors (the trainable adapter parameters).

``FlatSpec`` fixes an order of names with their shapes and dtypes, so that the adapter of a task is
one vector ``theta`` of length ``d = sum(numel)``: ``flatten`` concatenates, ``unflatten`` returns
views (reshaped slices) of the vector under the original names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class FlatSpec:
    """Names, shapes and dtypes of the tensors packed into one flat vector (order matters)."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]

    def __post_init__(self) -> None:
        if not (len(self.names) == len(self.shapes) == len(self.dtypes)):
            raise ValueError("names, shapes and dtypes must have the same length")
        if len(set(self.names)) != len(self.names):
            raise ValueError("parameter names must be unique")

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor]) -> FlatSpec:
        return cls(
            names=tuple(tensors),
            shapes=tuple(tuple(t.shape) for t in tensors.values()),
            dtypes=tuple(str(t.dtype).removeprefix("torch.") for t in tensors.values()),
        )

    @property
    def numels(self) -> tuple[int, ...]:
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def dim(self) -> int:
        return sum(self.numels)

    def offsets(self) -> dict[str, tuple[int, int]]:
        """``name -> (start, stop)`` in the flat vector."""
        out, start = {}, 0
        for name, n in zip(self.names, self.numels):
            out[name] = (start, start + n)
            start += n
        return out

    def flatten(self, tensors: Mapping[str, torch.Tensor], dtype: torch.dtype | None = None) -> torch.Tensor:
        """Concatenate ``tensors`` (all names of the spec, matching shapes) into a ``(d,)`` vector."""
        missing = [n for n in self.names if n not in tensors]
        if missing:
            raise KeyError(f"missing tensors for {missing[:3]}{'...' if len(missing) > 3 else ''}")
        parts = []
        for name, shape in zip(self.names, self.shapes):
            t = tensors[name]
            if tuple(t.shape) != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {tuple(t.shape)}")
            parts.append(t.reshape(-1).to(dtype) if dtype is not None else t.reshape(-1))
        return torch.cat(parts)

    def unflatten(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of ``vec`` ``(d,)`` reshaped to each named shape (differentiable through ``vec``)."""
        if vec.dim() != 1 or vec.shape[0] != self.dim:
            raise ValueError(f"expected a flat vector of length {self.dim}, got shape {tuple(vec.shape)}")
        return {
            name: chunk.view(shape)
            for name, shape, chunk in zip(self.names, self.shapes, vec.split(self.numels))
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "shapes": [list(s) for s in self.shapes],
            "dtypes": list(self.dtypes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FlatSpec:
        return cls(tuple(data["names"]), tuple(tuple(s) for s in data["shapes"]), tuple(data["dtypes"]))
