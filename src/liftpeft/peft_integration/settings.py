"""``BackboneConfig``: the validated settings of a PEFT backbone and its task objectives.

One dataclass, used by ``bench`` (a benchmark's ``settings:``) and saved with every artefact
(``backbone_settings`` in ``method.json``), so an adapter made from a bench state runs with the
same ``max_length`` as bench used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from liftpeft.peft_integration.backbone import CHOICE_HEADS, FAMILIES


@dataclass(frozen=True)
class BackboneConfig:
    model: str | None = field(default=None, metadata={"help": "base model (default: the benchmark's)"})
    peft: dict[str, Any] | None = field(
        default=None, metadata={"help": "peft config as a dict (default: LoRA r=4, alpha=8)"}
    )
    family: str = field(default="auto", metadata={"help": f"auto or one of {FAMILIES}"})
    choice_head: str = field(default="cross", metadata={"help": f"one of {CHOICE_HEADS}"})
    backbone_seed: int = field(default=0, metadata={"help": "seed of new heads and LoRA A"})
    prefix_cache: bool = field(default=False, metadata={"help": "cache frozen lower layers"})
    device: str = field(default="cpu", metadata={"help": "torch device"})
    max_length: int = field(default=256, metadata={"help": "tokens per example"})
    eval_batch_size: int = field(default=32, metadata={"help": "examples per evaluation batch"})

    def __post_init__(self) -> None:
        if self.family not in ("auto", *FAMILIES):
            raise ValueError(f"family must be 'auto' or one of {FAMILIES}, got {self.family!r}")
        if self.choice_head not in CHOICE_HEADS:
            raise ValueError(f"choice_head must be one of {CHOICE_HEADS}, got {self.choice_head!r}")
        for name in ("max_length", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.peft is not None and not isinstance(self.peft, dict):
            raise ValueError(f"peft must be a mapping of peft config fields, got {type(self.peft).__name__}")

    @classmethod
    def names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> BackboneConfig:
        """The backbone fields of a benchmark's settings (other keys are the benchmark's own)."""
        return cls(**{k: v for k, v in settings.items() if k in cls.names()})

    def objective_settings(self) -> dict[str, Any]:
        """What a task objective needs (saved as ``backbone_settings`` with artefacts)."""
        return {"max_length": self.max_length, "eval_batch_size": self.eval_batch_size}
