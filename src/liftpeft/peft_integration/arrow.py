"""peft's Arrow routing (``create_arrow_model``, ``ArrowConfig``) over a zoo of flat adapters.

Arrow (Ostapenko et al. 2024) routes every token, in every LoRA layer, to the ``top_k`` experts whose
prototype (the top right singular vector of the expert's ``B A``) is most similar to it, mixing
their outputs by a softmax; it is not one adapter, so it has no flat vector. ``arrow_objective``
therefore builds peft's Arrow model itself: the experts are written as ``peft`` adapter directories
(a temporary folder), ``create_arrow_model`` loads them onto a fresh copy of the base model (memory:
one more base model), and the task is scored on that model with the same losses and metrics as any
adapter (a ``PeftTaskObjective`` over ``ArrowModel``, whose ``theta`` is ignored).

A trainable head outside the LoRA layers (the cross-encoder's) is not routed by peft: it is set to the
mean of the experts' heads (liftpeft's choice, as in ``merge``). Needs peft >= 0.17.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from liftpeft.peft_integration.backbone import PeftBackbone


class ArrowModel:
    """Backbone-like view of peft's Arrow model: ``forward(theta, ...)`` ignores ``theta``."""

    prefix_cache = None

    def __init__(self, backbone: PeftBackbone, model: Any) -> None:
        self.model = model
        self.tokenizer = backbone.tokenizer
        self.family = backbone.family
        self.choice_head = backbone.choice_head
        self.device = backbone.device
        self.model_ref = backbone.model_ref

    def forward(self, theta: torch.Tensor | None, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("_bypass_cache", None)
        return self.model(*args, **kwargs)

    def logits_at(self, theta, input_ids, attention_mask, positions) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return out.logits[positions.to(out.logits.device)]


def build_arrow_model(
    backbone: PeftBackbone, experts: torch.Tensor, *, top_k: int, router_temperature: float, seed: int
):
    """peft's ``create_arrow_model`` over ``experts`` ``(N, d)`` on a fresh copy of the base model."""
    try:
        from peft import ArrowConfig, create_arrow_model
    except ImportError as err:
        raise ImportError(
            "arrow needs peft >= 0.17 (ArrowConfig, create_arrow_model): pip install -U peft"
        ) from err
    from liftpeft.peft_integration.export import export_adapter

    if experts.dim() != 2 or experts.shape[1] != backbone.dim:
        raise ValueError(f"experts must be (N, {backbone.dim}), got {tuple(experts.shape)}")
    config = ArrowConfig(top_k=min(top_k, len(experts)), router_temperature=router_temperature, rng_seed=seed)
    cuda = [backbone.device.index or 0] if backbone.device.type == "cuda" else []
    # loading a base model and adding the router draw from torch's global generators: fork them
    with torch.random.fork_rng(devices=cuda), tempfile.TemporaryDirectory(prefix="liftpeft-arrow-") as tmp:
        paths = [
            str(export_adapter(backbone, theta, Path(tmp) / f"expert-{i}")) for i, theta in enumerate(experts)
        ]
        model = create_arrow_model(backbone.fresh_base_model(), paths, config)
    _set_heads(model, backbone, experts)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def _set_heads(model: Any, backbone: PeftBackbone, experts: torch.Tensor) -> None:
    """The experts' mean head in each ``modules_to_save`` wrapper (its original module and the
    router's copy, whichever the active router adapter reads)."""
    params = dict(model.named_parameters())
    mean = backbone.spec.unflatten(experts.mean(0))
    marker = ".modules_to_save.default."
    with torch.no_grad():
        for name, value in mean.items():
            if marker not in name:
                continue
            for where in (".original_module.", ".modules_to_save.arrow_router."):
                target = params.get(name.replace(marker, where))
                if target is not None:
                    target.copy_(value.to(target.device, target.dtype))


def arrow_objective(task: Any, experts: torch.Tensor, *, top_k: int, router_temperature: float, seed: int):
    """``task`` (a ``PeftTaskObjective``) scored on peft's Arrow model over ``experts``."""
    from liftpeft.peft_integration.objective import PeftTaskObjective

    model = build_arrow_model(
        task.backbone, experts, top_k=top_k, router_temperature=router_temperature, seed=seed
    )
    return PeftTaskObjective(
        ArrowModel(task.backbone, model),
        task.task,
        max_length=task.max_length,
        eval_batch_size=task.eval_batch_size,
        similarity_scale=task.similarity_scale,
    )
