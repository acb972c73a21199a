"""A ``transformers`` model with a ``peft`` adapter whose trainable parameters are one flat vector.

This package is the only place that imports ``transformers`` and ``peft``. ``PeftBackbone`` loads a
model (local path or hub id), wraps it with a PEFT config (LoRA rank 4 on the model type's default
targets unless told otherwise), and exposes the trainable parameters as ``theta`` (``FlatSpec``
order). ``forward(theta, ...)`` evaluates the model at ``theta`` with ``torch.func.functional_call``:
the backbone is never copied and gradients flow to ``theta``.

Families and the model class each uses:

* ``causal``  — ``AutoModelForCausalLM`` (language modelling, options scored by log-likelihood)
* ``seq2seq`` — ``AutoModelForSeq2SeqLM`` (text-to-text, options scored by log-likelihood)
* ``encoder`` — ``AutoModelForSequenceClassification`` with one output (``choice_head="cross"``: a
  cross-encoder scores each (input, option) pair; the head is trainable and part of ``theta``), or
  ``AutoModel`` (``choice_head="similarity"``: cosine similarity of mean-pooled embeddings).
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.func import functional_call

from liftpeft.core.flat import FlatSpec

FAMILIES = ("causal", "seq2seq", "encoder")
CHOICE_HEADS = ("cross", "similarity")
_VOLATILE_CONFIG_KEYS = {
    "_name_or_path",
    "transformers_version",
    "architectures",
    "torch_dtype",
    "dtype",
    "id2label",
    "label2id",
    "num_labels",
    "problem_type",
    "_attn_implementation",
    "_attn_implementation_autoset",
    "output_attentions",
    "output_hidden_states",
    "use_cache",
    "return_dict",
    "tie_word_embeddings",
}


class ModelLoadError(RuntimeError):
    """The base model or its tokenizer could not be loaded; the message says what to do."""


class BackboneMismatchError(ValueError):
    """An artefact (prior, adapter) was made for a different base model or adapter shape."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def detect_family(config: Any) -> str:
    """``seq2seq`` for encoder-decoders, ``causal`` for LM-head architectures, else ``encoder``."""
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    archs = getattr(config, "architectures", None) or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "causal"
    if not archs and getattr(config, "model_type", "") in {
        "gpt2",
        "gpt_neo",
        "gptj",
        "llama",
        "mistral",
        "opt",
        "qwen2",
    }:
        return "causal"
    return "encoder"


def config_fingerprint(config: Any) -> str:
    """A short hash of the architecture-defining fields of a ``transformers`` config."""
    data = {k: v for k, v in config.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS}
    blob = json.dumps(_jsonable(data), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


_SAMPLE = 256  # elements sampled per tensor for the weights fingerprint


def weights_fingerprint(model: Any, skip: Any = ()) -> str:
    """A short hash of a model's loaded weights: a fixed strided sample of every parameter tensor
    except ``skip`` (those initialised anew rather than loaded), cast to bfloat16 so the same
    checkpoint loaded in another dtype gives the same hash. Cheap for any model size; two models of
    one architecture with other weights (another fine-tune, another seed) differ."""
    skipped = set(skip)
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            if name in skipped or not tensor.is_floating_point():
                continue
            flat = tensor.detach().reshape(-1)
            index = torch.linspace(0, flat.numel() - 1, min(_SAMPLE, flat.numel())).long()
            # float32 linspace can round the last index past the end of a large (> 2**24) tensor;
            # clamping keeps every smaller tensor's sample, hence existing fingerprints, unchanged
            index = index.clamp_(max=flat.numel() - 1)
            sample = flat[index].to("cpu", torch.bfloat16).view(torch.int16)
            digest.update(name.encode())
            digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def _offline_hint(model: str) -> str:
    if Path(model).exists():
        return f"{model} exists but is not a loadable transformers model directory (config.json and weights)"
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
    where = (
        "the Hugging Face hub is switched off (HF_HUB_OFFLINE=1)"
        if offline
        else "it could not be fetched from the hub"
    )
    return f"{model!r} is not a local directory and {where}; pass the path of a local model directory"


def describe_peft_error(err: Exception) -> str:
    return " ".join(str(err).split())[:300]


@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' load reports, progress bars and deprecation chatter while loading.

    A new scoring head being "newly initialised" is expected here; liftpeft shows its own progress.
    """
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")
            warnings.filterwarnings("ignore", message=r".*fan_in_fan_out.*", category=UserWarning)
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def make_peft_config(peft_config: Any, family: str, choice_head: str):
    """A ``peft`` config from ``None`` (LoRA r=4, alpha=8 on default targets), a dict, or a config object."""
    from peft import LoraConfig, PeftConfig, TaskType, get_peft_config

    needs_head = family == "encoder" and choice_head == "cross"
    if peft_config is None:
        peft_config = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0}
    if isinstance(peft_config, dict):
        data = dict(peft_config)
        if "peft_type" in data:
            peft_config = get_peft_config(data)
        else:
            peft_config = LoraConfig(**data)
    if not isinstance(peft_config, PeftConfig):
        raise TypeError(
            f"peft_config must be None, a dict or a peft config, got {type(peft_config).__name__}"
        )
    if getattr(peft_config, "inference_mode", False):
        # a saved adapter's config says inference_mode=True; liftpeft addresses the adapter as theta
        peft_config.inference_mode = False
    if needs_head and getattr(peft_config, "task_type", None) is None:
        peft_config.task_type = TaskType.SEQ_CLS  # makes the scoring head trainable (modules_to_save)
    return peft_config


class PeftBackbone:
    """A frozen ``transformers`` model plus a PEFT adapter addressed as a flat vector ``theta``.

    Args:
        model: local model directory or hub id.
        peft_config: ``None`` (LoRA rank 4), a dict of ``LoraConfig`` fields, a dict with ``peft_type``
            (any PEFT method), or a ``peft`` config object.
        family: ``"auto"`` or one of ``causal`` / ``seq2seq`` / ``encoder``.
        choice_head: for encoders, ``"cross"`` (trainable scoring head) or ``"similarity"``.
        seed: seeds the adapter's random initialisation (LoRA A, any new head).
        device, dtype: where the backbone lives and in which precision (``theta`` is float32).
    """

    def __init__(
        self,
        model: str | os.PathLike,
        peft_config: Any = None,
        *,
        family: str = "auto",
        choice_head: str = "cross",
        seed: int = 0,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        prefix_cache: bool = False,
    ) -> None:
        from peft import get_peft_model
        from transformers import AutoConfig, AutoTokenizer

        if family not in ("auto", *FAMILIES):
            raise ValueError(f"family must be 'auto' or one of {FAMILIES}, got {family!r}")
        if choice_head not in CHOICE_HEADS:
            raise ValueError(f"choice_head must be one of {CHOICE_HEADS}, got {choice_head!r}")
        local = Path(model).expanduser()
        self.model_ref = str(local.resolve()) if local.exists() else str(model)
        try:
            config = AutoConfig.from_pretrained(self.model_ref)
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_ref)
        except (OSError, ValueError) as err:
            raise ModelLoadError(
                f"could not load model {self.model_ref!r}: {_offline_hint(self.model_ref)}"
            ) from err
        self.family = detect_family(config) if family == "auto" else family
        self.choice_head = choice_head
        self.seed = int(seed)
        self.device = torch.device(device)
        torch.manual_seed(self.seed)  # new heads and LoRA A are initialised from torch's global RNG
        with _quiet_transformers():
            base = self._load_base(dtype)
            base.eval()
            self.peft_config = make_peft_config(peft_config, self.family, choice_head)
            try:
                self.model = get_peft_model(base, self.peft_config).to(self.device)
            except ValueError as err:
                raise ValueError(
                    f"the PEFT config does not fit {self.model_ref!r}: {describe_peft_error(err)}; "
                    "set target_modules to module names of this model"
                ) from err
        self.model.eval()  # no dropout: the likelihood is deterministic given theta and the batch
        self._trainable = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        if not self._trainable:
            raise ValueError("the PEFT config left no trainable parameters; check target_modules")
        for p in self._trainable.values():
            p.requires_grad_(False)  # gradients flow through theta, never into the module
        self.spec = FlatSpec.from_tensors(self._trainable)
        self.theta0 = self.get_theta()
        self.config_fingerprint = config_fingerprint(config)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.prefix_cache = None
        if prefix_cache:
            from liftpeft.peft_integration.prefix_cache import PrefixCache

            self.prefix_cache = PrefixCache.create(self)

    def _load_base(self, dtype: torch.dtype):
        from transformers import (
            AutoModel,
            AutoModelForCausalLM,
            AutoModelForSeq2SeqLM,
            AutoModelForSequenceClassification,
        )

        kwargs: dict[str, Any] = {"dtype": dtype, "output_loading_info": True}
        try:
            if self.family == "causal":
                base, info = AutoModelForCausalLM.from_pretrained(self.model_ref, **kwargs)
            elif self.family == "seq2seq":
                base, info = AutoModelForSeq2SeqLM.from_pretrained(self.model_ref, **kwargs)
            elif self.choice_head == "cross":
                base, info = AutoModelForSequenceClassification.from_pretrained(
                    self.model_ref, num_labels=1, **kwargs
                )
            else:
                base, info = AutoModel.from_pretrained(self.model_ref, **kwargs)
            # new heads are random (seeded): only the weights read from the checkpoint identify it
            self.weights_fingerprint = weights_fingerprint(base, skip=info.get("missing_keys", ()))
            return base
        except (OSError, ValueError) as err:
            raise ModelLoadError(
                f"could not load model {self.model_ref!r}: {_offline_hint(self.model_ref)}"
            ) from err

    def fresh_base_model(self):
        """Another copy of the base model without any adapter (read again from ``model_ref``; a new
        head gets this backbone's seeded initialisation), on this backbone's device, in eval mode."""
        dtype = next(self.model.parameters()).dtype
        torch.manual_seed(self.seed)
        with _quiet_transformers():
            base = self._load_base(dtype)
        return base.to(self.device).eval()

    # -- theta ------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.spec.dim

    def get_theta(self) -> torch.Tensor:
        """The adapter currently held by the module, as a flat float32 vector (a copy)."""
        return self.spec.flatten(self._trainable, dtype=torch.float32).detach().to("cpu").clone()

    def set_theta(self, theta: torch.Tensor) -> None:
        """Write ``theta`` into the module's adapter parameters (in place)."""
        with torch.no_grad():
            for name, value in self.spec.unflatten(theta.detach().to(self.device)).items():
                param = self._trainable[name]
                param.copy_(value.to(param.dtype))

    def params(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named adapter tensors viewed from ``theta`` (moved to the backbone's device and cast to each
        parameter's dtype; differentiable, so gradients reach a ``theta`` that lives on the CPU)."""
        theta = theta.to(self.device)
        out = {}
        for name, value in self.spec.unflatten(theta).items():
            dtype = self._trainable[name].dtype
            out[name] = value if value.dtype == dtype else value.to(dtype)
        return out

    def forward(self, theta: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """Run the model with adapter ``theta`` (functional; differentiable in ``theta``).

        With ``prefix_cache`` enabled, a call with only ``input_ids`` and ``attention_mask`` runs the
        adapted top layers from cached lower-layer states and returns ``last_hidden_state`` (encoders)
        or ``logits`` (GPT-2) only.
        """
        bypass = kwargs.pop("_bypass_cache", False)
        if (
            self.prefix_cache is not None
            and not bypass
            and not args
            and set(kwargs) == {"input_ids", "attention_mask"}
        ):
            return self.prefix_cache.forward(theta, kwargs["input_ids"], kwargs["attention_mask"])
        return functional_call(self.model, self.params(theta), args, kwargs, strict=False)

    def logits_at(
        self,
        theta: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        positions: torch.Tensor,
    ) -> torch.Tensor:
        """Causal LMs: logits ``(N, V)`` at the true entries of ``positions`` (B, T), in row-major order.

        With a prefix cache only those positions go through the LM head; otherwise the full logits are
        computed and selected (same values).
        """
        if self.prefix_cache is not None and self.prefix_cache.stack.kind != "encoder":
            return self.prefix_cache.logits_at(theta, input_ids, attention_mask, positions)
        out = self.forward(theta, input_ids=input_ids, attention_mask=attention_mask, _bypass_cache=True)
        return out.logits[positions.to(out.logits.device)]

    # -- description ------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """JSON-able description used to check that artefacts match this backbone."""
        from liftpeft import __version__

        return {
            "model": self.model_ref,
            "config_fingerprint": self.config_fingerprint,
            "weights_fingerprint": self.weights_fingerprint,
            "family": self.family,
            "choice_head": self.choice_head,
            "peft_config": _jsonable(self.peft_config.to_dict()),
            "spec": self.spec.to_dict(),
            "liftpeft_version": __version__,
        }

    def check_compatible(self, description: dict[str, Any], what: str = "this artefact") -> None:
        """Raise ``BackboneMismatchError`` (saying what differs) if ``description`` is for another backbone."""
        problems = []
        fingerprint = description.get("config_fingerprint")
        if fingerprint is not None and fingerprint != self.config_fingerprint:
            problems.append(
                f"it was made for base model {description.get('model')!r}, whose architecture differs from "
                f"{self.model_ref!r}"
            )
        weights = description.get("weights_fingerprint")
        if not problems and weights is not None and weights != self.weights_fingerprint:
            problems.append(
                f"it was made for base model {description.get('model')!r}; {self.model_ref!r} has the "
                "same architecture but other weights"
            )
        for key in ("family", "choice_head"):
            theirs = description.get(key)
            if theirs not in (None, "auto") and theirs != getattr(self, key):
                problems.append(f"{key} is {theirs!r} there but {getattr(self, key)!r} here")
        spec = FlatSpec.from_dict(description["spec"]) if "spec" in description else None
        if spec is not None and (spec.names, spec.shapes) != (self.spec.names, self.spec.shapes):
            problems.append(
                f"its adapter has {len(spec.names)} tensors / {spec.dim} parameters, this backbone's has "
                f"{len(self.spec.names)} / {self.spec.dim} (different PEFT config or target modules)"
            )
        if problems:
            raise BackboneMismatchError(
                f"{what} does not match the backbone: "
                + "; ".join(problems)
                + f". Use the base model it was made for ({description.get('model')!r}) and its PEFT config."
            )


def backbone_from_description(
    description: dict[str, Any], model: str | os.PathLike | None = None, **kwargs: Any
) -> PeftBackbone:
    """Rebuild the backbone an artefact was made with (``model`` overrides where the base model is)."""
    from transformers import AutoConfig

    ref = str(model if model is not None else description["model"])
    try:
        config = AutoConfig.from_pretrained(ref)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"could not load model {ref!r}: {_offline_hint(ref)}") from err
    expected = description.get("config_fingerprint")
    if expected is not None and expected != config_fingerprint(config):
        raise BackboneMismatchError(
            f"it was made for base model {description.get('model')!r}, whose architecture differs from "
            f"{ref!r}; use the base model it was made for"
        )
    backbone = PeftBackbone(
        model if model is not None else description["model"],
        peft_config=description.get("peft_config"),
        family=description.get("family", "auto"),
        choice_head=description.get("choice_head", "cross"),
        **kwargs,
    )
    backbone.check_compatible(description)
    return backbone
