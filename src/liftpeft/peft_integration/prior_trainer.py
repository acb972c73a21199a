"""Fine-tune under a learned prior inside a ``transformers`` ``Trainer`` (or TRL's ``SFTTrainer``).

The posterior of a new task's adapter ``theta`` (SPEC section 4) is
``p(theta | D) ∝ p(theta) exp(-(n / tau) L(theta))`` with ``L`` the mean per-example loss the trainer
already minimises. Dividing ``-log p(theta | D)`` by ``n_eff = n / tau`` gives the loss trained here:

    loss(theta) = L(theta) + (1 / n_eff) * (-log p(theta))

* ``mode="map"``: the trainer's own optimiser (AdamW by default) minimises it: the MAP adapter.
* ``mode="sgld"``: the optimiser is ``LangevinSGD``: each step is SGD on ``loss`` plus the noise
  ``sqrt(2 lr T / n_eff) z``, ``z ~ N(0, I)`` per adapter coordinate, which samples
  ``p(theta | D)^(1/T)`` (see ``liftpeft.core.langevin_optimizer``). Gradient clipping and weight
  decay would bias the sampler, so they must be off (``max_grad_norm=0``, ``weight_decay=0``).

The prior's gradient is added once per optimiser step by its own backward pass (scaled by the
gradient-accumulation steps), so it does not depend on how the trainer normalises the data loss.
The logged ``loss`` stays the data loss; ``prior_nll`` (``-log p(theta)``) is logged beside it.
``PriorTrainerMixin`` goes before any ``Trainer`` subclass: ``class MySFT(PriorTrainerMixin, SFTTrainer)``.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from transformers import Trainer

from liftpeft.core.langevin_optimizer import LangevinSGD
from liftpeft.core.sgld import check_step_size, recommended_step_size
from liftpeft.learned_prior import LearnedPrior

MODES = ("map", "sgld")


@dataclass
class PriorTrainingConfig:
    """How the prior enters the trainer's loss (``n_eff = n_examples / tau``)."""

    mode: str = field(default="map", metadata={"help": "map (the trainer's optimiser) | sgld (LangevinSGD)"})
    temperature: float = field(default=1.0, metadata={"help": "SGLD temperature T (0 = SGD)"})
    tau: float = field(default=1.0, metadata={"help": "likelihood temperature: the prior weighs tau / n"})
    n_examples: int | None = field(
        default=None, metadata={"help": "n of the mean loss; default len(train_dataset)"}
    )
    beta_scale: float = field(default=1.0, metadata={"help": "widen the task spread beta by this factor"})
    init_from_prior: bool = field(
        default=True, metadata={"help": "start the adapter at the prior's largest-weight mean"}
    )
    seed: int | None = field(default=None, metadata={"help": "seed of the SGLD noise; default args.seed"})

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be finite and >= 0, got {self.temperature!r}")
        if not self.tau > 0:
            raise ValueError(f"tau must be > 0, got {self.tau!r}")
        if self.n_examples is not None and self.n_examples < 1:
            raise ValueError(f"n_examples must be >= 1, got {self.n_examples!r}")
        if not self.beta_scale > 0:
            raise ValueError(f"beta_scale must be > 0, got {self.beta_scale!r}")


class PriorTrainerMixin:
    """Adds ``(tau / n) * (-log p(theta))`` of a ``LearnedPrior`` to a ``Trainer``'s objective.

    Args (keywords, besides the trainer's own):
        prior: the ``LearnedPrior`` (or a directory / Hub id for ``LearnedPrior.from_pretrained``).
        prior_config: a ``PriorTrainingConfig`` (or a dict of its fields); default MAP.
    """

    def __init__(
        self, *args: Any, prior: LearnedPrior | str | os.PathLike, prior_config: Any = None, **kwargs: Any
    ):
        if not isinstance(prior, LearnedPrior):
            prior = LearnedPrior.from_pretrained(prior)
        config = prior_config if prior_config is not None else PriorTrainingConfig()
        if isinstance(config, dict):
            config = PriorTrainingConfig(**config)
        super().__init__(*args, **kwargs)
        self.prior = prior
        self.prior_config = config
        self.prior_penalty = prior.adapter_penalty(config.beta_scale)
        self.prior_penalty.parameters(self.model)  # refuse a model without the prior's adapter now
        self.prior_weight = config.tau / self._prior_n_examples()
        self._prior_nll: list[float] = []
        if config.mode == "sgld":
            self._check_sgld()
        if config.init_from_prior:
            prior.init_adapter(self.model)

    def _prior_n_examples(self) -> int:
        if self.prior_config.n_examples is not None:
            return self.prior_config.n_examples
        try:
            return len(self.train_dataset)
        except TypeError:
            raise ValueError(
                "the training set has no length (a streamed dataset?); give "
                "prior_config=PriorTrainingConfig(n_examples=...) with its number of examples"
            ) from None

    def _check_sgld(self) -> None:
        if self.optimizer is not None:
            raise ValueError("mode='sgld' brings its own optimiser (LangevinSGD); do not pass optimizers=")
        if self.args.max_grad_norm and self.args.max_grad_norm > 0:
            raise ValueError(
                "mode='sgld' needs unclipped gradients; set max_grad_norm=0 in the TrainingArguments"
            )
        if self.args.weight_decay:
            raise ValueError(
                "mode='sgld' samples the prior's posterior; set weight_decay=0 in the TrainingArguments"
            )
        n_eff = self.prior_weight**-1
        curvature = self.prior_penalty.prior.curvature
        check_step_size(
            2.0 * self.args.learning_rate / n_eff,
            curvature,
            "the adapter under the prior (SGLD step 2 lr tau / n)",
            f"Lower learning_rate below {recommended_step_size(curvature) * n_eff / 2:.3g}.",
        )

    def create_optimizer(self, *args: Any, **kwargs: Any):
        if self.prior_config.mode == "sgld" and self.optimizer is None:
            params = [p for p in self.model.parameters() if p.requires_grad]
            seed = self.args.seed if self.prior_config.seed is None else self.prior_config.seed
            self.optimizer = LangevinSGD(
                params,
                lr=self.args.learning_rate,
                n_eff=self.prior_weight**-1,
                temperature=self.prior_config.temperature,
                seed=seed,
            )
        return super().create_optimizer(*args, **kwargs)

    def training_step(self, model: torch.nn.Module, inputs: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        loss = super().training_step(model, inputs, *args, **kwargs)
        steps = (
            getattr(self, "current_gradient_accumulation_steps", None)
            or self.args.gradient_accumulation_steps
        )
        penalty = self.prior_penalty(model)  # -log p(theta)
        self.accelerator.backward(penalty * (self.prior_weight / steps))
        self._prior_nll.append(float(penalty.detach()))
        return loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if self._prior_nll and ("loss" in logs or "train_loss" in logs):  # a training log, not eval
            logs["prior_nll"] = sum(self._prior_nll) / len(self._prior_nll)
            self._prior_nll.clear()
        super().log(logs, *args, **kwargs)

    def prior_settings(self) -> dict[str, Any]:
        """The prior's settings in this run (for a record beside the trained adapter)."""
        return {**asdict(self.prior_config), "weight": self.prior_weight}


class PriorTrainer(PriorTrainerMixin, Trainer):
    """``transformers.Trainer`` fine-tuning a PEFT adapter under a learned prior (MAP or SGLD)."""


def prior_peft_model(prior: LearnedPrior, model: str | os.PathLike | None = None, **kwargs: Any):
    """The prior's base model (``model`` overrides where it is) with its PEFT adapter, trainable and
    set to the prior's largest-weight mean: a ``peft`` model ready for ``PriorTrainer``."""
    from liftpeft.peft_integration.backbone import backbone_from_description

    backbone = backbone_from_description(prior.backbone, model=model, **kwargs)
    peft_model = backbone.model
    for name, param in peft_model.named_parameters():
        if name in backbone.spec.names:
            param.requires_grad_(True)
    prior.init_adapter(peft_model)
    return peft_model


def prior_peft_config(prior: LearnedPrior):
    """The ``peft`` config of the prior's adapter, e.g. for ``SFTTrainer(peft_config=...)`` (which then
    wraps the base model itself; ``PriorTrainerMixin`` starts the adapter at the prior's mean)."""
    from liftpeft.peft_integration.backbone import make_peft_config

    description = prior.backbone
    return make_peft_config(
        dict(description.get("peft_config") or {}) or None,
        description.get("family", "causal"),
        description.get("choice_head", "cross"),
    )
