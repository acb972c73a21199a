"""peft's own merges of a zoo of LoRA adapters (``add_weighted_adapter``), as flat vectors of a backbone.

``merge_adapters(backbone, thetas, weights, combination_type)`` loads the ``N`` adapters ``thetas``
``(N, d)`` into the backbone's ``peft`` model as extra adapters, calls peft's
``add_weighted_adapter`` (``linear``, ``ties``, ``dare_ties``, ``dare_linear``, ``svd``, ...) and
reads the merged adapter back in the backbone's ``theta`` layout; the extra adapters are deleted
afterwards, the backbone's own adapter is never touched.

Two conversions, both exact:

* peft gives the merged adapter ``lora_alpha = r`` (its scaling folds into the merged A and B), so
  each merged pair is multiplied by ``sqrt(scaling_merged / scaling_backbone)``: the backbone at the
  returned ``theta`` computes the same function as peft's merged model;
* ``add_weighted_adapter`` merges LoRA layers only (it refuses adapters that share a
  ``modules_to_save`` head). A trainable head outside the LoRA layers (the cross-encoder's scoring
  head) is set to the weighted mean ``sum_i w_i h_i / sum_i w_i`` of the adapters' heads (the plain
  mean where the weights sum to zero): liftpeft's choice, not peft's.

DARE draws random masks from torch's global generators: ``seed`` seeds them (CPU, and the backbone's
CUDA device) inside a forked RNG state, so the caller's random streams are left as they were.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from liftpeft.peft_integration.backbone import PeftBackbone

MERGED = "liftpeft_merged"
_ZOO = "liftpeft_zoo_{}"
SAME_RANK_TYPES = ("linear", "ties", "dare_ties", "dare_linear", "magnitude_prune", "svd")


def _lora_layers(model):
    from peft.tuners.lora import LoraLayer

    return {name: module for name, module in model.named_modules() if isinstance(module, LoraLayer)}


def _lora_name(name: str) -> tuple[str, str] | None:
    """``(layer path, "lora_A" | "lora_B")`` of a backbone parameter name, or None if it is not LoRA's."""
    for part in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B"):
        marker = f".{part}.default"
        if marker in name:
            return name.split(marker)[0], part
    return None


def _renamed(name: str, adapter: str) -> str:
    return name.replace(".default", f".{adapter}", 1) if _lora_name(name) else name


def _parameter_root(model):
    """The module whose parameter and module names are the backbone's ``spec`` names: a ``PeftModel``
    itself, or the wrapped network of a bare peft tuner (``LoraModel``, the image backbone's)."""
    from peft import PeftModel

    return model if isinstance(model, PeftModel) else model.model


def _add_adapter(model, name: str, config) -> None:
    """A new, untrained LoRA adapter ``name`` on a ``PeftModel`` (its base class: no head copies) or a
    bare peft tuner."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        PeftModel.add_adapter(model, name, config)
    else:
        model.peft_config[name] = config
        model.inject_adapter(model.model, name)


def check_mergeable(backbone: PeftBackbone, combination_type: str) -> None:
    """A ``ValueError`` with what to do if peft cannot merge this backbone's adapters this way."""
    if str(getattr(backbone.peft_config.peft_type, "value", backbone.peft_config.peft_type)) != "LORA":
        raise ValueError(
            f"peft's add_weighted_adapter merges LoRA adapters only, this backbone's adapter is "
            f"{backbone.peft_config.peft_type}; use a LoRA zoo for the merge baselines"
        )
    if combination_type not in SAME_RANK_TYPES and not combination_type.endswith("_svd"):
        raise ValueError(
            f"combination_type {combination_type!r} changes the rank (or is unknown); use one of "
            f"{', '.join(SAME_RANK_TYPES)} or a *_svd type"
        )


def merge_adapters(
    backbone: PeftBackbone,
    thetas: torch.Tensor,
    weights: torch.Tensor | list[float],
    combination_type: str,
    *,
    density: float | None = None,
    majority_sign_method: str = "total",
    seed: int = 0,
) -> torch.Tensor:
    """peft's ``add_weighted_adapter`` merge of the adapters ``thetas`` ``(N, d)``, as a flat ``(d,)``."""
    check_mergeable(backbone, combination_type)
    weights = [float(w) for w in weights]
    if thetas.dim() != 2 or thetas.shape != (len(weights), backbone.dim):
        raise ValueError(
            f"thetas must be (N, {backbone.dim}) with one weight per row, got {tuple(thetas.shape)} "
            f"and {len(weights)} weights"
        )
    model = backbone.model
    names = [_ZOO.format(i) for i in range(len(weights))]
    config = dataclasses.replace(backbone.peft_config, modules_to_save=None, inference_mode=True)
    cuda = [backbone.device.index or 0] if backbone.device.type == "cuda" else []
    # new adapters are initialised (and DARE draws) from torch's global generators: fork them
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        try:
            for name, theta in zip(names, thetas):
                _add_adapter(model, name, config)
                _write(model, backbone, theta, name)
            torch.manual_seed(seed)
            model.add_weighted_adapter(
                names,
                weights,
                MERGED,
                combination_type=combination_type,
                density=density,
                majority_sign_method=majority_sign_method,
            )
            return _read_merged(model, backbone, thetas, weights)
        finally:
            for name in [*names, MERGED]:
                if name in model.peft_config:
                    model.delete_adapter(name)
            model.set_adapter("default")
            for p in model.parameters():
                p.requires_grad_(False)


def _write(model, backbone: PeftBackbone, theta: torch.Tensor, adapter: str) -> None:
    params = dict(_parameter_root(model).named_parameters())
    with torch.no_grad():
        for name, value in backbone.spec.unflatten(theta.detach()).items():
            if _lora_name(name):
                target = params[_renamed(name, adapter)]
                target.copy_(value.to(target.device, target.dtype))


def _read_merged(model, backbone: PeftBackbone, thetas: torch.Tensor, weights: list[float]) -> torch.Tensor:
    params = dict(_parameter_root(model).named_parameters())
    layers = _lora_layers(_parameter_root(model))
    total = sum(weights)
    head_weights = (
        torch.tensor(weights) / total if abs(total) > 1e-12 else torch.full((len(weights),), 1 / len(weights))
    )
    zoo = [backbone.spec.unflatten(t.detach()) for t in thetas]
    out = {}
    for name in backbone.spec.names:
        lora = _lora_name(name)
        if lora is None:  # a head outside the LoRA layers: the weighted mean of the adapters' heads
            out[name] = sum(w * z[name] for w, z in zip(head_weights.tolist(), zoo))
            continue
        layer = layers[lora[0]]
        factor = math.sqrt(layer.scaling[MERGED] / layer.scaling["default"])
        out[name] = params[_renamed(name, MERGED)].detach().float().cpu() * factor
    return backbone.spec.flatten(out, dtype=torch.float32).detach().clone()
