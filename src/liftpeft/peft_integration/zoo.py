"""Read a zoo of ``peft`` adapter directories into flat vectors on one backbone.

``load_adapter_zoo`` refuses, naming it, any adapter made for another base model or with another
adapter shape, before reading any (``liftpeft.peft_integration.zoo_check``). The prior fitted to the vectors is ``liftpeft.zoo_prior.zoo_prior``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from liftpeft.peft_integration.backbone import PeftBackbone, backbone_from_description
from liftpeft.peft_integration.export import adapter_to_theta, read_adapter_description
from liftpeft.peft_integration.hub import resolve_adapter_source
from liftpeft.peft_integration.zoo_check import check_adapter_zoo

ADAPTER_CONFIG = "adapter_config.json"


def expand_adapter_dirs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Adapter directories from ``paths``: each is an adapter, or a folder whose sub-folders are adapters;
    a path that does not exist is read as a Hub id (``owner/name[/sub][@revision]``, ``hub``)."""
    out: list[Path] = []
    for path in map(resolve_adapter_source, paths):
        if (path / ADAPTER_CONFIG).is_file():
            out.append(path)
            continue
        children = (
            sorted(p for p in path.iterdir() if (p / ADAPTER_CONFIG).is_file()) if path.is_dir() else []
        )
        if not children:
            raise FileNotFoundError(
                f"{path} is neither a peft adapter directory (no {ADAPTER_CONFIG}) nor a folder of them"
            )
        out.extend(children)
    if not out:
        raise ValueError("no adapters given")
    return out


@dataclass
class AdapterZoo:
    """Adapters read into flat vectors: ``thetas`` ``(N, d)`` in the order of ``dirs``."""

    backbone: PeftBackbone
    thetas: torch.Tensor
    dirs: list[Path]

    @property
    def names(self) -> list[str]:
        """Each adapter's folder name (a Hub repository that is one adapter: its ``owner/name``)."""
        return [_display_name(d) for d in self.dirs]


def _display_name(folder: Path) -> str:
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return folder.parent.parent.name.removeprefix("models--").replace("--", "/")
    return folder.name


def load_adapter_zoo(
    adapters: Sequence[str | os.PathLike],
    *,
    model: str | os.PathLike | None = None,
    family: str | None = None,
    choice_head: str | None = None,
) -> AdapterZoo:
    """Read adapter directories (or folders of them) into flat vectors on one backbone.

    The backbone is rebuilt from the first adapter's description (``model`` overrides where the base
    model is; ``family`` / ``choice_head`` fill in what plain ``peft`` adapters do not record); its
    PEFT initialisation (``PeftBackbone``'s default seed) is the prior's center. Every adapter is
    checked first (``zoo_check.check_adapter_zoo``: base model name and weights, PEFT type, rank,
    target modules, every tensor covered): ``ZooMismatchError`` names the first one that does not fit.
    """
    dirs = expand_adapter_dirs(adapters)
    first = read_adapter_description(dirs[0])
    description = dict(first)
    if family is not None:
        description["family"] = family
    if choice_head is not None:
        description["choice_head"] = choice_head
    backbone = backbone_from_description(description, model=model)
    check_adapter_zoo(dirs, backbone)  # every adapter, before any is read
    thetas = []
    for adapter in dirs:
        backbone.check_compatible(read_adapter_description(adapter), what=f"adapter {adapter}")
        thetas.append(adapter_to_theta(backbone, adapter))
    return AdapterZoo(backbone, torch.stack(thetas), dirs)
