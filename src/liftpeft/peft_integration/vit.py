"""A ``transformers`` ViT (ViT-B/16 in the paper's VTAB-1K runs) with ``peft`` LoRA and an N-way head.

``ViTBackbone`` loads the image encoder with ``AutoModel`` (local directory or hub id) and its
preprocessing with ``AutoImageProcessor``, injects LoRA (``peft.inject_adapter_in_model``; rank 4 on
the attention's query / value projections unless told otherwise) and owns the head
``head.weight`` (N, F) / ``head.bias`` (N,), zero at ``theta0``. For the L2-normalised ``[CLS]``
feature ``f`` (B, F) of the last layer at ``theta``, the logits are those of ``vision.head_logits``
(``head="linear"``: ``scale * f @ W.T + b``; ``"prototype"`` adds the task's class means). It offers
the interface ``VisionTaskObjective`` uses (``inputs``, ``features``, ``logits``), so image tasks run
on it as on EfficientNet-Lite. A task with fewer classes than ``n_way`` uses the head's first rows.
No layer is frozen below the adapter, so nothing is cached: every step runs the whole encoder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from liftpeft.core.flat import FlatSpec
from liftpeft.peft_integration.backbone import (
    ModelLoadError,
    _offline_hint,
    _quiet_transformers,
    config_fingerprint,
    weights_fingerprint,
)
from liftpeft.peft_integration.vision import HEADS, head_logits

# the attention's query / value projections under either naming of transformers' ViT (``query`` /
# ``value`` before transformers 5, ``q_proj`` / ``v_proj`` after; checkpoints load into both)
VIT_QV = r".*attention\.(query|value|q_proj|v_proj)"
DEFAULT_PEFT = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": VIT_QV}


class ViTBackbone:
    """A frozen ViT image encoder plus LoRA and an ``n_way`` head addressed as a flat ``theta``.

    Args:
        model: local model directory or hub id of a ViT image encoder (``google/vit-base-patch16-224-in21k``).
        peft_config: ``LoraConfig`` fields (default ``DEFAULT_PEFT``).
        n_way: rows of the head (at least the largest class count of the tasks).
        head, head_scale: ``"linear"`` or ``"prototype"``, and the cosine scale.
        seed: seeds LoRA's A matrices. ``device``, ``dtype``: where the frozen encoder lives.
        eval_chunk: images per forward pass when preprocessing.
    """

    def __init__(
        self,
        model: str | os.PathLike,
        peft_config: dict[str, Any] | None = None,
        *,
        n_way: int,
        head: str = "linear",
        head_scale: float = 10.0,
        seed: int = 0,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        from peft import LoraConfig, inject_adapter_in_model
        from transformers import AutoImageProcessor, AutoModel

        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if n_way < 2:
            raise ValueError(f"n_way must be >= 2, got {n_way}")
        local = Path(model).expanduser()
        self.model_ref = str(local.resolve()) if local.exists() else str(model)
        try:
            with _quiet_transformers():
                net = AutoModel.from_pretrained(self.model_ref, dtype=dtype)
                self.processor = AutoImageProcessor.from_pretrained(self.model_ref)
        except (OSError, ValueError) as err:
            raise ModelLoadError(
                f"could not load model {self.model_ref!r}: {_offline_hint(self.model_ref)}"
            ) from err
        config = net.config
        if getattr(config, "image_size", None) is None or getattr(config, "hidden_size", None) is None:
            raise ValueError(f"{self.model_ref!r} is not a ViT image encoder (its config has no image_size)")
        self.n_way, self.head, self.head_scale, self.seed = int(n_way), head, float(head_scale), int(seed)
        self.device = torch.device(device)
        self.image_size = int(config.image_size)
        self.config_fingerprint = config_fingerprint(config)
        self.weights_fingerprint = weights_fingerprint(net)
        self.peft_settings = dict(DEFAULT_PEFT if peft_config is None else peft_config)
        torch.manual_seed(self.seed)  # LoRA A is drawn from torch's global RNG
        try:
            self.net = inject_adapter_in_model(LoraConfig(**self.peft_settings), net).to(self.device).eval()
        except ValueError as err:
            raise ValueError(
                f"the LoRA config does not fit {self.model_ref!r} ({' '.join(str(err).split())[:200]}); set "
                "target_modules to module names such as query, value, key, dense"
            ) from err
        lora = {n: p for n, p in self.net.named_parameters() if "lora_" in n}
        if not lora:
            raise ValueError(
                "the LoRA config matched no module; set target_modules to names such as query, value"
            )
        for p in self.net.parameters():
            p.requires_grad_(False)  # gradients flow through theta, never into the module
        tensors = {n: p.detach().float() for n, p in lora.items()}
        tensors["head.weight"] = torch.zeros(self.n_way, int(config.hidden_size))
        tensors["head.bias"] = torch.zeros(self.n_way)
        self.spec = FlatSpec.from_tensors(tensors)
        self.theta0 = self.spec.flatten(tensors, dtype=torch.float32).detach().cpu().clone()

    @property
    def dim(self) -> int:
        return self.spec.dim

    def inputs(self, images: np.ndarray) -> torch.Tensor:
        """uint8 ``(n, H, W[, 3])`` -> ``pixel_values`` ``(n, 3, S, S)`` by the model's image processor."""
        if images.ndim == 3:  # grey: three equal channels, as the processor expects RGB
            images = np.repeat(images[..., None], 3, axis=-1)
        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        return pixels.to(self.device, next(self.net.parameters()).dtype)

    def features(self, theta: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """L2-normalised ``[CLS]`` features ``(B, F)`` of the last layer at ``theta`` (differentiable)."""
        params = self.spec.unflatten(theta.to(self.device))
        dtype = next(self.net.parameters()).dtype
        lora = {k: v.to(dtype) for k, v in params.items() if not k.startswith("head.")}
        out = functional_call(self.net, lora, (), {"pixel_values": inputs}, strict=False)
        return F.normalize(out.last_hidden_state[:, 0].float(), dim=-1)  # (B, F)

    def logits(
        self,
        theta: torch.Tensor,
        feats: torch.Tensor,
        train_feats: torch.Tensor | None,
        train_labels: torch.Tensor | None,
    ) -> torch.Tensor:
        """``(B, n_way)`` class scores of ``feats`` (see the module doc)."""
        params = self.spec.unflatten(theta.to(self.device))
        return head_logits(params, feats, train_feats, train_labels, self.head, self.head_scale)

    def describe(self) -> dict[str, Any]:
        from liftpeft import __version__

        return {
            "model": self.model_ref,
            "config_fingerprint": self.config_fingerprint,
            "weights_fingerprint": self.weights_fingerprint,
            "peft_config": dict(self.peft_settings),
            "n_way": self.n_way,
            "image_size": self.image_size,
            "head": self.head,
            "head_scale": self.head_scale,
            "spec": self.spec.to_dict(),
            "liftpeft_version": __version__,
        }
