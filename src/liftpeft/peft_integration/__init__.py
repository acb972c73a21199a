"""The only layer that touches ``transformers`` and ``peft``: backbones, task objectives, adapters."""

from liftpeft.peft_integration.backbone import (
    BackboneMismatchError,
    ModelLoadError,
    PeftBackbone,
    backbone_from_description,
)
from liftpeft.peft_integration.export import adapter_to_theta, export_adapter, read_adapter_description
from liftpeft.peft_integration.objective import PeftTaskObjective
from liftpeft.peft_integration.sentence_embedder import TextEmbedder, sentence_embedder

__all__ = [
    "BackboneMismatchError",
    "ModelLoadError",
    "PeftBackbone",
    "PeftTaskObjective",
    "TextEmbedder",
    "adapter_to_theta",
    "backbone_from_description",
    "export_adapter",
    "read_adapter_description",
    "sentence_embedder",
]
