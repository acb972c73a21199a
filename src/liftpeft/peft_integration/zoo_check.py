"""Up-front checks of a zoo of ``peft`` adapter directories, before anything is read or written.

``check_adapter_zoo(dirs, backbone)`` refuses the first adapter that does not fit, with one sentence
naming it and saying what to do (``ZooMismatchError``, a ``BackboneMismatchError``). What is checked:

* base model, name: every adapter's ``base_model_name_or_path`` (``adapter_config.json``) is the
  first adapter's;
* base model, weights: an adapter that liftpeft wrote carries, in ``liftpeft.json``, fingerprints of
  the base model's architecture and loaded weights (``backbone.weights_fingerprint``: a strided
  sample of every weight tensor, hashed); they must equal those of the base model loaded here. A
  foreign ``peft`` adapter records only the name, so only the name is checked for it;
* the PEFT type (``peft_type``), the rank (``r`` and ``rank_pattern``: adapters of other ranks are
  refused, never padded), the scaling (``lora_alpha``, ``alpha_pattern``, ``use_rslora``,
  ``use_dora``), the target modules and ``modules_to_save``: all equal to the first adapter's;
* coverage: the tensors in ``adapter_model.safetensors`` are exactly those the model's ``peft``
  wrapping saves (``get_peft_model_state_dict``), with the same shapes. ``peft`` itself loads what
  matches and ignores the rest; a zoo with a tensor nobody reads, or a tensor missing, is refused.
  Only safetensors files are read (never a pickled ``adapter_model.bin``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from liftpeft.peft_integration.backbone import BackboneMismatchError, PeftBackbone

WEIGHTS_FILE = "adapter_model.safetensors"
METADATA_FILE = "liftpeft.json"
# adapter_config.json fields that must agree across a zoo, by what they are
_SHAPE_FIELDS = {
    "rank": ("r", "rank_pattern"),
    "scaling": ("lora_alpha", "alpha_pattern", "use_rslora", "use_dora"),
    "target modules": ("target_modules", "modules_to_save", "layers_to_transform"),
}


class ZooMismatchError(BackboneMismatchError):
    """An adapter of a zoo does not fit the others or the base model; the message names it."""


def _config(adapter: Path) -> dict[str, Any]:
    return json.loads((adapter / "adapter_config.json").read_text())


def _comparable(value: Any) -> Any:
    return sorted(value) if isinstance(value, (list, tuple, set)) else value


def _base_name(config: dict[str, Any]) -> str | None:
    name = config.get("base_model_name_or_path")
    return str(name).rstrip("/") if name is not None else None


def expected_tensors(backbone: PeftBackbone) -> dict[str, tuple[int, ...]]:
    """The tensor names and shapes ``peft`` saves for ``backbone``'s adapter (what a zoo file must hold)."""
    from peft.utils import get_peft_model_state_dict

    return {k: tuple(v.shape) for k, v in get_peft_model_state_dict(backbone.model).items()}


def stored_tensors(adapter: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes in an adapter's safetensors file (read from its header only)."""
    from safetensors import safe_open

    file = adapter / WEIGHTS_FILE
    if not file.is_file():
        raise ZooMismatchError(
            f"adapter {adapter} has no {WEIGHTS_FILE} (liftpeft never unpickles adapter_model.bin); "
            "re-save it with peft's save_pretrained(..., safe_serialization=True)"
        )
    with safe_open(str(file), "pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def _check_base(adapter: Path, config: dict[str, Any], reference: Path, ref_config: dict[str, Any]) -> None:
    if _base_name(config) != _base_name(ref_config):
        raise ZooMismatchError(
            f"adapter {adapter} was made for base model {_base_name(config)!r}, but {reference} for "
            f"{_base_name(ref_config)!r}; a zoo needs adapters of one base model: drop it or use a zoo per base model"
        )


def _check_weights(adapter: Path, backbone: PeftBackbone) -> None:
    meta_file = adapter / METADATA_FILE
    if not meta_file.is_file():
        return  # a foreign peft adapter: only its base model's name is recorded
    described = json.loads(meta_file.read_text()).get("backbone", {})
    for key, what in (("config_fingerprint", "architecture"), ("weights_fingerprint", "weights")):
        theirs, ours = described.get(key), getattr(backbone, key)
        if theirs is not None and theirs != ours:
            raise ZooMismatchError(
                f"adapter {adapter} was fine-tuned on a base model whose {what} differ from those of "
                f"{backbone.model_ref!r} (fingerprint {theirs} vs {ours}); pass --model with the base "
                "model it was trained on, or drop it from the zoo"
            )


def _check_peft(adapter: Path, config: dict[str, Any], reference: Path, ref_config: dict[str, Any]) -> None:
    if config.get("peft_type") != ref_config.get("peft_type"):
        raise ZooMismatchError(
            f"adapter {adapter} is a {config.get('peft_type')} adapter but {reference} is "
            f"{ref_config.get('peft_type')}; a zoo needs one PEFT type: drop it or use a zoo per type"
        )
    for what, fields in _SHAPE_FIELDS.items():
        for name in fields:
            theirs, ours = config.get(name), ref_config.get(name)
            if _comparable(theirs) != _comparable(ours):
                hint = (
                    "ranks are refused, not padded: retrain it at that rank or use a zoo per rank"
                    if what == "rank"
                    else "retrain it with the zoo's settings or use a separate zoo"
                )
                raise ZooMismatchError(
                    f"adapter {adapter} has {name}={theirs!r} but {reference} has {name}={ours!r} "
                    f"(its {what} differs); {hint}"
                )


def _check_coverage(adapter: Path, expected: dict[str, tuple[int, ...]]) -> None:
    stored = stored_tensors(adapter)
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    if missing or extra:
        parts = [f"{len(missing)} tensors missing (first: {missing[0]})"] if missing else []
        parts += [f"{len(extra)} tensors the model has no place for (first: {extra[0]})"] if extra else []
        raise ZooMismatchError(
            f"adapter {adapter} does not cover the model's adapter exactly ({' and '.join(parts)}); "
            "peft would load the rest silently, liftpeft refuses it: re-save it from a model wrapped "
            "with the zoo's PEFT config"
        )
    wrong = sorted(k for k in expected if stored[k] != expected[k])
    if wrong:
        raise ZooMismatchError(
            f"adapter {adapter} has tensor {wrong[0]} of shape {stored[wrong[0]]}, the model's adapter "
            f"expects {expected[wrong[0]]}; re-save it from a model wrapped with the zoo's PEFT config"
        )


def check_adapter_zoo(dirs: Sequence[Path], backbone: PeftBackbone) -> None:
    """Refuse (``ZooMismatchError``, naming it) the first adapter of ``dirs`` that does not fit.

    ``backbone`` is the model wrapped with the first adapter's PEFT config; nothing is loaded into it.
    """
    reference = Path(dirs[0])
    ref_config = _config(reference)
    expected = expected_tensors(backbone)
    for adapter in map(Path, dirs):
        config = _config(adapter)
        _check_base(adapter, config, reference, ref_config)
        _check_weights(adapter, backbone)
        _check_peft(adapter, config, reference, ref_config)
        _check_coverage(adapter, expected)
