"""Caching the frozen lower layers: when the adapter only touches layers ``s..L-1`` of a layer stack,
the hidden states entering layer ``s`` do not depend on ``theta``. They are computed once per distinct
input (keyed by its token ids) and every later forward pass runs only the top layers.

What it saves: with LoRA on the top ``L - s`` of ``L`` layers, a forward+backward pass costs roughly
``(L - s) / L`` of the full pass plus the (cached) embedding, and identical texts in a batch (repeated
options such as "yes" / "no") are computed once. Supported stacks: BERT-like encoders
(``encoder.layer``, last hidden state), GPT-2 (``transformer.h`` + ``ln_f`` + ``lm_head``) and
Llama-style decoders (``model.layers`` + ``model.norm`` + ``lm_head``, rotary positions).

Causal stacks (GPT-2, Llama): the state of token ``t`` after the lower layers depends only on tokens
``<= t``, so a cached row is exact whatever follows it. Rows are right-padded; the top layers get an
additive mask that is causal and hides padded keys, and (Llama) the rotary positions ``0..T-1`` that
the full model uses for right-padded rows. For Llama the cache is filled by running only the
embedding and the lower layers (the full forward is never run).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch.func import functional_call
from transformers.modeling_outputs import BaseModelOutput, CausalLMOutput

logger = logging.getLogger(__name__)

_LAYER_INDEX = re.compile(r"\.(?:layer|h|layers|block)\.(\d+)\.")


@dataclass
class _Stack:
    kind: str  # "encoder" | "gpt2" | "llama"
    layers: Any  # nn.ModuleList
    prefix: str  # parameter-name prefix of layer i is f"{prefix}{i}."
    base: Any  # the transformers model that owns the stack


def _find_stack(peft_model) -> _Stack | None:
    base = peft_model.base_model.model
    if (
        hasattr(base, "encoder")
        and hasattr(base.encoder, "layer")
        and not getattr(base.config, "is_decoder", False)
    ):
        if hasattr(base, "embeddings") and not hasattr(base, "classifier"):
            return _Stack("encoder", base.encoder.layer, "base_model.model.encoder.layer.", base)
    if hasattr(base, "transformer") and hasattr(base.transformer, "h") and hasattr(base, "lm_head"):
        return _Stack("gpt2", base.transformer.h, "base_model.model.transformer.h.", base)
    inner = getattr(base, "model", None)
    if (
        hasattr(base, "lm_head")
        and all(hasattr(inner, a) for a in ("embed_tokens", "layers", "norm", "rotary_emb"))
        and not getattr(base.config, "is_encoder_decoder", False)
    ):
        return _Stack("llama", inner.layers, "base_model.model.model.layers.", base)
    return None


def split_layer(names: list[str], stack_prefix: str) -> int | None:
    """Index of the lowest layer holding a trainable tensor, or None if some tensor lies outside the stack."""
    indices = []
    for name in names:
        if not name.startswith(stack_prefix):
            return None
        match = _LAYER_INDEX.search(name)
        if match is None:
            return None
        indices.append(int(match.group(1)))
    return min(indices)


class PrefixCache:
    """Cached inputs of layer ``split`` keyed by token ids, and the top-layer forward from them."""

    def __init__(self, backbone, stack: _Stack, split: int) -> None:
        self.backbone = backbone
        self.stack = stack
        self.split = split
        self._hidden: dict[tuple[int, ...], torch.Tensor] = {}
        self._top_names = [
            [n for n in backbone.spec.names if n.startswith(f"{stack.prefix}{i}.")]
            for i in range(split, len(stack.layers))
        ]

    @classmethod
    def create(cls, backbone) -> PrefixCache | None:
        stack = _find_stack(backbone.model)
        if stack is None:
            logger.info(
                "prefix cache: unsupported architecture for %s; using full forward passes", backbone.model_ref
            )
            return None
        split = split_layer(list(backbone.spec.names), stack.prefix)
        if not split:  # None (tensors outside the stack) or 0 (nothing to cache)
            logger.info(
                "prefix cache: the adapter touches the lowest layer or non-layer tensors; not caching"
            )
            return None
        return cls(backbone, stack, split)

    def __len__(self) -> int:
        return len(self._hidden)

    # -- filling the cache ---------------------------------------------------------------------------
    @torch.no_grad()
    def _fill(self, rows: list[tuple[int, ...]]) -> None:
        missing = sorted(dict.fromkeys(r for r in rows if r not in self._hidden), key=len)  # less padding
        for start in range(0, len(missing), 64):
            chunk = missing[start : start + 64]
            width = max(len(r) for r in chunk)
            ids = torch.full((len(chunk), width), 0, dtype=torch.long)
            mask = torch.zeros(len(chunk), width, dtype=torch.long)
            for i, r in enumerate(chunk):
                ids[i, : len(r)] = torch.tensor(r)
                mask[i, : len(r)] = 1
            device = self.backbone.device
            if self.stack.kind == "llama":
                hidden = self._lower(ids.to(device), mask.to(device))
                for i, r in enumerate(chunk):
                    self._hidden[r] = hidden[i, : len(r)].detach().clone()
                continue
            out = self.backbone.forward(
                self.backbone.theta0.to(device),
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                output_hidden_states=True,
                _bypass_cache=True,
            )
            hidden = out.hidden_states[self.split]  # (n, T, H): the input of layer `split`
            for i, r in enumerate(chunk):
                self._hidden[r] = hidden[i, : len(r)].detach().clone()

    # -- the cached forward ------------------------------------------------------------------------
    def forward(self, theta: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        out = self._top_hidden(theta, input_ids, attention_mask)  # (B, T, H)
        if self.stack.kind == "encoder":
            return BaseModelOutput(last_hidden_state=out)
        return CausalLMOutput(logits=self._head(out))

    def logits_at(
        self,
        theta: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        positions: torch.Tensor,
    ) -> torch.Tensor:
        """Causal stacks: logits ``(N, V)`` at the ``N`` true entries of ``positions`` (B, T), row-major.

        The LM head (a 576 x 49152 matrix for SmolLM2) then runs only where a token is predicted.
        """
        if self.stack.kind == "encoder":
            raise ValueError("logits_at needs a causal LM stack, not an encoder")
        hidden = self._top_hidden(theta, input_ids, attention_mask)  # (B, T, H)
        return self._head(hidden[positions.to(hidden.device)])  # (N, V)

    def _top_hidden(self, theta: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """Hidden states after the top layers (before any final norm), ``(B, T, H)``; distinct rows run once."""
        lengths = attention_mask.sum(1).tolist()
        rows = [tuple(input_ids[i, : int(n)].tolist()) for i, n in enumerate(lengths)]
        self._fill(rows)
        unique = list(dict.fromkeys(rows))
        where = {r: i for i, r in enumerate(unique)}
        width = input_ids.shape[1]
        h_dim = self._hidden[unique[0]].shape[-1]
        hidden = torch.zeros(len(unique), width, h_dim, device=self.backbone.device)
        mask = torch.zeros(len(unique), width, dtype=torch.long, device=self.backbone.device)
        for i, r in enumerate(unique):
            hidden[i, : len(r)] = self._hidden[r]
            mask[i, : len(r)] = 1
        out = self._top(theta, hidden, mask)  # (U, T, H)
        gather = torch.tensor([where[r] for r in rows], device=out.device)
        return out[gather]

    def _head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Causal stacks: final norm and LM head, ``(..., H) -> (..., V)``."""
        base = self.stack.base
        if self.stack.kind == "gpt2":
            return base.lm_head(base.transformer.ln_f(hidden))
        return base.lm_head(base.model.norm(hidden))

    def _layer_kwargs(self, hidden: torch.Tensor, mask: torch.Tensor) -> dict[str, Any]:
        """The attention mask (and for Llama the rotary positions) every layer of the stack gets."""
        neg = torch.finfo(hidden.dtype).min
        if self.stack.kind == "encoder":
            return {"attention_mask": (1.0 - mask[:, None, None, :].to(hidden.dtype)) * neg}  # (B, 1, 1, T)
        t = mask.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=mask.device).tril()
        allowed = causal[None, None] & mask[:, None, None, :].bool()  # (B, 1, T, T)
        additive = torch.zeros(allowed.shape, dtype=hidden.dtype, device=mask.device).masked_fill(
            ~allowed, neg
        )
        kwargs: dict[str, Any] = {"attention_mask": additive}
        if self.stack.kind == "llama":
            positions = torch.arange(t, device=hidden.device)[None]  # (1, T): right padding
            kwargs["position_ids"] = positions
            kwargs["position_embeddings"] = self.stack.base.model.rotary_emb(hidden, positions)
        return kwargs

    def _lower(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Llama: the input of layer ``split``, ``(B, T, H)``, from the embedding and the frozen lower layers."""
        hidden = self.stack.base.model.embed_tokens(ids)  # (B, T, H)
        kwargs = self._layer_kwargs(hidden, mask)
        for layer in self.stack.layers[: self.split]:
            out = layer(hidden, **kwargs)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def _top(self, theta: torch.Tensor, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        params = self.backbone.params(theta)
        kwargs = self._layer_kwargs(hidden, mask)
        for offset, names in enumerate(self._top_names):
            index = self.split + offset
            layer = self.stack.layers[index]
            prefix = f"{self.stack.prefix}{index}."
            sub = {n[len(prefix) :]: params[n] for n in names}
            out = functional_call(layer, sub, (hidden,), kwargs, strict=False)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden
