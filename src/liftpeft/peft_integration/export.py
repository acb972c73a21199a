"""Adapters on disk in the standard ``peft`` format.

``export_adapter`` writes ``theta`` as a directory that ``peft.PeftModel.from_pretrained(base, dir)``
loads (``adapter_config.json``, ``adapter_model.safetensors``), plus ``liftpeft.json`` describing the
backbone and a model card ``README.md`` (``library_name: peft``, ``base_model`` when the base model
has a Hub id, tags), so the directory can be pushed to the Hub as it is. ``adapter_to_theta`` reads any such directory back into a flat vector.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from liftpeft.atomic import atomic_write_json, atomic_write_text
from liftpeft.model_card import CARD_FILE, adapter_card, fix_adapter_card
from liftpeft.outputs import OutputDir, claim_output
from liftpeft.peft_integration.backbone import BackboneMismatchError, PeftBackbone

METADATA_FILE = "liftpeft.json"


def export_adapter(
    backbone: PeftBackbone,
    theta: torch.Tensor,
    out_dir: str | os.PathLike | OutputDir,
    metadata: dict[str, Any] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Save ``theta`` as a ``peft`` adapter directory.

    ``out_dir`` is claimed as an ``adapter`` output (``liftpeft.outputs``): a non-empty directory
    that is not a liftpeft adapter is refused untouched; an existing liftpeft adapter is replaced
    only with ``overwrite``, and then only its own files. Files are built aside and renamed in.
    """
    target = (
        out_dir
        if isinstance(out_dir, OutputDir)
        else claim_output(out_dir, "adapter", overwrite=overwrite, publish=True)
    )
    previous = backbone.get_theta()
    backbone.set_theta(theta)
    try:
        with target, target.build() as tmp:
            atomic_write_text(tmp / CARD_FILE, adapter_card(backbone.describe(), metadata or {}))
            backbone.model.save_pretrained(tmp)  # peft adds its metadata to the card
            _fix_base_reference(tmp, backbone.model_ref)
            fix_adapter_card(tmp, backbone.model_ref)
            atomic_write_json(tmp / METADATA_FILE, {"backbone": backbone.describe(), **(metadata or {})})
    finally:
        backbone.set_theta(previous)
    return target.path


def _fix_base_reference(folder: Path, model_ref: str) -> None:
    """Record the base model as given (peft stores the loaded path, which may be relative)."""
    config_file = folder / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = model_ref
    atomic_write_json(config_file, config)


def adapter_to_theta(backbone: PeftBackbone, adapter_dir: str | os.PathLike) -> torch.Tensor:
    """Read a ``peft`` adapter directory into a flat ``theta`` for ``backbone``.

    Raises ``BackboneMismatchError`` naming the directory if its tensors do not match the backbone's
    adapter (a different PEFT config, rank, target modules or base model).
    """
    from peft.utils import load_peft_weights, set_peft_model_state_dict

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter_dir} is not a peft adapter directory (no adapter_config.json)")
    meta_file = adapter_dir / METADATA_FILE
    if meta_file.is_file():
        backbone.check_compatible(
            json.loads(meta_file.read_text())["backbone"], what=f"adapter {adapter_dir}"
        )
    weights = load_peft_weights(str(adapter_dir), device="cpu")
    previous = backbone.get_theta()
    try:
        result = set_peft_model_state_dict(backbone.model, weights)
        missing = [k for k in result.missing_keys if k in _trainable_keys(backbone)]
        unexpected = list(getattr(result, "unexpected_keys", []))
        if missing or unexpected:
            raise BackboneMismatchError(
                f"adapter {adapter_dir} does not fit the backbone's adapter: "
                f"{len(missing)} tensors missing (e.g. {missing[:2]}), {len(unexpected)} unexpected "
                f"(e.g. {unexpected[:2]}); it was made with a different PEFT config or base model"
            )
        theta = backbone.get_theta()
    except RuntimeError as err:  # shape mismatch inside load_state_dict
        raise BackboneMismatchError(
            f"adapter {adapter_dir} has tensors of other shapes than the backbone's: {err}"
        ) from None
    finally:
        backbone.set_theta(previous)
    return theta


def _trainable_keys(backbone: PeftBackbone) -> set[str]:
    return set(backbone.spec.names)


def read_adapter_description(adapter_dir: str | os.PathLike) -> dict[str, Any]:
    """The backbone description of an adapter directory.

    Adapters written by liftpeft carry it in ``liftpeft.json``; for any other ``peft`` adapter it is
    built from ``adapter_config.json`` (base model and PEFT config; the family is detected on load).
    """
    adapter_dir = Path(adapter_dir)
    meta_file = adapter_dir / METADATA_FILE
    if meta_file.is_file():
        return json.loads(meta_file.read_text())["backbone"]
    config_file = adapter_dir / "adapter_config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{adapter_dir} is not a peft adapter directory (no adapter_config.json)")
    config = json.loads(config_file.read_text())
    return {"model": config.get("base_model_name_or_path"), "peft_config": config, "family": "auto"}
