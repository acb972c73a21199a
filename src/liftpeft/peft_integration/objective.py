"""``TaskObjective`` for a task on a ``PeftBackbone``: losses and metrics for every task kind.

Per-example losses (their mean over a batch is ``L(theta)``):

* language modelling / text-to-text: the mean cross-entropy of the example's predicted tokens;
* multiple choice: ``-log softmax_j(score_j)[label]`` over the example's options, where ``score_j`` is
  the mean log-probability of option ``j``'s tokens (causal / seq2seq), the cross-encoder output, or
  ``scale * cos(embed(input), embed(option))`` (similarity head).

``evaluate`` with several ``thetas`` (M, d) averages the predictive probabilities of the M adapters.

Beyond the ``TaskObjective`` interface it offers ``example_texts(split)`` (the examples' input texts)
and, for multiple-choice tasks, ``embed(theta, idx, split)``: mean-pooled, L2-normalised last hidden
states of each input and of each distinct option text, encoded separately (the encoder's half of a
seq2seq model; the hidden states under the head of a cross-encoder or causal LM).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from liftpeft.metrics import macro_f1
from liftpeft.objective import ChoiceEmbeddings
from liftpeft.peft_integration.backbone import PeftBackbone
from liftpeft.peft_integration.encode import (
    IGNORE,
    EncodedChoices,
    EncodedTokens,
    encode_choices,
    encode_texts,
    encode_tokens,
    pad_texts,
)
from liftpeft.tasks.schema import SPLITS, Task


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # (B, H)


def _token_logprobs(
    logits: torch.Tensor, labels: torch.Tensor, causal: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities over the vocabulary at predicted positions and the aligned labels.

    Returns ``(logp (B, T', V), labels (B, T'))``; causal models predict token ``t+1`` at position ``t``.
    """
    if causal:
        logits, labels = logits[:, :-1], labels[:, 1:]
    return torch.log_softmax(logits.float(), dim=-1), labels


class PeftTaskObjective:
    """One task on a ``PeftBackbone``, addressed through a flat adapter vector.

    Args:
        backbone: the wrapped model.
        task: the task (its kind decides the loss).
        max_length: token budget per model input (longer inputs are truncated; for causal models the
            left of the input is cut so that the option / target survives).
        eval_batch_size: examples per forward pass in ``evaluate``.
        similarity_scale: the cosine scale of the similarity head.
    """

    def __init__(
        self,
        backbone: PeftBackbone,
        task: Task,
        *,
        max_length: int = 256,
        eval_batch_size: int = 32,
        similarity_scale: float = 20.0,
    ) -> None:
        if task.kind == "lm" and backbone.family != "causal":
            raise ValueError(
                f"task {task.name!r} is language modelling ({{'text': ...}} lines), which needs a causal LM; "
                f"the backbone {backbone.model_ref!r} is {backbone.family}"
            )
        if task.kind == "text2text" and backbone.family == "encoder":
            raise ValueError(
                f"task {task.name!r} is text-to-text, which needs a causal or seq2seq model; "
                f"{backbone.model_ref!r} is an encoder"
            )
        self.backbone = backbone
        self.task = task
        self.name = task.name
        self.kind = task.kind
        self.max_length = max_length
        self.eval_batch_size = eval_batch_size
        self.similarity_scale = similarity_scale
        self.primary_metric = "accuracy" if task.kind == "choice" else "token_accuracy"
        self.higher_is_better = True
        self._encoded: dict[str, Any] = {}
        self._embedding_inputs: dict[str, list[list[int]]] = {}
        self._option_vocab: dict[str, int] | None = None
        self._option_tokens: list[list[int]] = []

    # -- encoding ---------------------------------------------------------------------------------
    def encoded(self, split: str) -> EncodedTokens | EncodedChoices:
        if split not in self._encoded:
            examples = self.task.split(split)
            if not examples:
                raise ValueError(f"task {self.name!r} has no {split} examples")
            tok, family = self.backbone.tokenizer, self.backbone.family
            seq2seq = family == "seq2seq"
            if self.kind == "choice":
                mode = self.backbone.choice_head if family == "encoder" else "loglik"
                self._encoded[split] = encode_choices(tok, examples, mode, seq2seq, self.max_length)
            else:
                self._encoded[split] = encode_tokens(tok, examples, seq2seq, self.max_length)
        return self._encoded[split]

    def n_examples(self, split: str = "train") -> int:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}")
        return len(self.task.split(split))

    # -- forward passes ---------------------------------------------------------------------------
    def _device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.backbone.device) for k, v in batch.items()}

    def _token_logp(self, theta: torch.Tensor, enc: EncodedTokens, idx: torch.Tensor):
        batch = self._device(enc.batch(idx))
        if enc.seq2seq:
            out = self.backbone.forward(theta, **batch)
            return _token_logprobs(out.logits, batch["labels"], causal=False)
        if self.kind == "text2text":
            return self._target_logp(theta, batch)
        out = self.backbone.forward(
            theta, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        )
        return _token_logprobs(out.logits, batch["labels"], causal=True)

    def _target_logp(self, theta: torch.Tensor, batch: dict[str, torch.Tensor]):
        """Causal text-to-text: log-probabilities at the target positions only, left-aligned per row.

        Returns ``(logp (B, W, V), labels (B, W))`` with ``W`` the longest target (``IGNORE`` pads):
        the same values ``_token_logprobs`` gives at those positions, without the LM head and the
        softmax ever running over the input's positions.
        """
        labels = batch["labels"]  # (B, T)
        predicts = torch.zeros_like(labels, dtype=torch.bool)
        predicts[:, :-1] = labels[:, 1:] != IGNORE  # position t predicts token t + 1
        logits = self.backbone.logits_at(theta, batch["input_ids"], batch["attention_mask"], predicts)
        counts = predicts.sum(1).cpu()  # (B,)
        width = max(int(counts.max()), 1)
        row = torch.repeat_interleave(torch.arange(len(counts)), counts).to(logits.device)
        col = torch.cat([torch.arange(int(n)) for n in counts]).to(logits.device)
        logp = torch.zeros(len(counts), width, logits.shape[-1], device=logits.device)
        logp = logp.index_put((row, col), torch.log_softmax(logits.float(), dim=-1))
        out_labels = torch.full((len(counts), width), IGNORE, dtype=torch.long, device=logits.device)
        out_labels[row, col] = labels[:, 1:][predicts[:, :-1]].to(logits.device)
        return logp, out_labels

    def _choice_logp(self, theta: torch.Tensor, enc: EncodedChoices, idx: torch.Tensor):
        """Log-softmax over each example's options, ``(B, max_options)`` (-inf pads), and labels ``(B,)``."""
        batch = self._device(enc.batch(idx))
        n_opt = batch.pop("n_options")
        labels = batch.pop("label")
        if enc.mode == "similarity":
            emb = self._embed(theta, batch["input_ids"], batch["attention_mask"])  # (B, H)
            opt = self._embed(theta, batch["option_ids"], batch["option_mask"])  # (R, H)
            owner = torch.repeat_interleave(torch.arange(len(n_opt), device=opt.device), n_opt.to(opt.device))
            scores = self.similarity_scale * (emb[owner] * opt).sum(-1)  # (R,)
        elif enc.mode == "cross":
            out = self.backbone.forward(
                theta, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            )
            scores = out.logits[:, 0].float()
        else:
            logp, labels_tok = self._loglik_rows(theta, batch, enc.seq2seq)
            mask = labels_tok != IGNORE
            tok_lp = logp.gather(-1, labels_tok.clamp_min(0).unsqueeze(-1)).squeeze(-1) * mask
            scores = tok_lp.sum(1) / mask.sum(1).clamp_min(1)  # mean log-prob of the option's tokens
        grouped = torch.full((len(n_opt), int(n_opt.max())), -math.inf, device=scores.device)
        counts = n_opt.cpu()
        col = torch.cat([torch.arange(int(n)) for n in counts]).to(scores.device)
        row = torch.repeat_interleave(torch.arange(len(counts)), counts).to(scores.device)
        grouped = grouped.index_put((row, col), scores)
        return torch.log_softmax(grouped, dim=-1), labels

    def _loglik_rows(self, theta, batch, seq2seq: bool):
        if seq2seq:
            out = self.backbone.forward(theta, **batch)
            return _token_logprobs(out.logits, batch["labels"], causal=False)
        labels = batch.pop("labels")
        out = self.backbone.forward(theta, **batch)
        return _token_logprobs(out.logits, labels, causal=True)

    def _embed(self, theta: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.backbone.forward(theta, input_ids=ids, attention_mask=mask)
        return F.normalize(_mean_pool(out.last_hidden_state.float(), mask), dim=-1)

    # -- optional extensions: texts and embeddings ---------------------------------------------------
    def example_texts(self, split: str = "train") -> list[str]:
        """The input text of every example of ``split`` (the whole text for language modelling)."""
        return [ex.text if self.kind == "lm" else ex.input for ex in self.task.split(split)]

    def option_vocabulary(self) -> dict[str, int]:
        """Every distinct option text of the task (all splits, first seen first) -> its id."""
        if self.kind != "choice":
            raise ValueError(f"task {self.name!r} is {self.kind!r}, not multiple choice: it has no options")
        if self._option_vocab is None:
            vocab: dict[str, int] = {}
            for split in SPLITS:
                for ex in self.task.split(split):
                    for opt in ex.options:
                        vocab.setdefault(opt, len(vocab))
            self._option_vocab = vocab
            self._option_tokens = encode_texts(self.backbone.tokenizer, list(vocab), self.max_length)
        return self._option_vocab

    def _pooled(self, theta: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """L2-normalised mean of the last hidden states, ``(B, H)``."""
        ids, mask = ids.to(self.backbone.device), mask.to(self.backbone.device)
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "output_hidden_states": True}
        if self.backbone.family == "seq2seq":
            kwargs["decoder_input_ids"] = ids[:, :1]  # the decoder must run once; only the encoder is read
        out = self.backbone.forward(theta, **kwargs)
        hidden = getattr(out, "encoder_last_hidden_state", None)
        if hidden is None:
            hidden = getattr(out, "last_hidden_state", None)
        if hidden is None:
            hidden = out.hidden_states[-1]
        return F.normalize(_mean_pool(hidden.float(), mask), dim=-1)

    def embed(
        self,
        theta: torch.Tensor,
        idx: torch.Tensor | None = None,
        split: str = "train",
        *,
        options: bool = True,
    ) -> ChoiceEmbeddings:
        """Embeddings of examples ``idx`` of ``split`` and of their distinct options (see the module doc)."""
        vocab = self.option_vocabulary()
        examples = self.task.split(split)
        if split not in self._embedding_inputs:
            texts = [ex.input for ex in examples]
            self._embedding_inputs[split] = encode_texts(self.backbone.tokenizer, texts, self.max_length)
        rows = (torch.arange(len(examples)) if idx is None else idx).tolist()
        pad = self.backbone.tokenizer.pad_token_id or 0
        inputs = self._pooled(theta, *pad_texts([self._embedding_inputs[split][i] for i in rows], pad))
        classes = [[vocab[o] for o in examples[i].options] for i in rows]
        distinct = sorted({c for per in classes for c in per})
        position = {c: j for j, c in enumerate(distinct)}
        option_emb = None
        if options:
            option_emb = self._pooled(theta, *pad_texts([self._option_tokens[c] for c in distinct], pad))
        return ChoiceEmbeddings(
            inputs=inputs,
            options=option_emb,
            option_ids=torch.tensor(distinct, device=inputs.device),
            row_option=torch.tensor([position[c] for per in classes for c in per], device=inputs.device),
            n_options=torch.tensor([len(per) for per in classes], device=inputs.device),
            labels=torch.tensor([examples[i].label for i in rows], device=inputs.device),
        )

    # -- the TaskObjective interface ----------------------------------------------------------------
    def loss(
        self, theta: torch.Tensor, idx: torch.Tensor | None = None, split: str = "train"
    ) -> torch.Tensor:
        enc = self.encoded(split)
        idx = torch.arange(len(enc)) if idx is None else idx
        if isinstance(enc, EncodedChoices):
            logp, labels = self._choice_logp(theta, enc, idx)
            return F.nll_loss(logp, labels.to(logp.device))
        logp, labels = self._token_logp(theta, enc, idx)
        mask = labels != IGNORE
        nll = -logp.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1) * mask  # (B, T)
        return (nll.sum(1) / mask.sum(1).clamp_min(1)).mean()

    @torch.no_grad()
    def evaluate(self, thetas: torch.Tensor, split: str = "test") -> dict[str, float]:
        thetas = thetas[None] if thetas.dim() == 1 else thetas
        enc = self.encoded(split)
        chunks = torch.arange(len(enc)).split(self.eval_batch_size)
        if isinstance(enc, EncodedChoices):
            return self._evaluate_choices(thetas, enc, chunks, split)
        return self._evaluate_tokens(thetas, enc, chunks)

    def _averaged(self, thetas: torch.Tensor, fn) -> tuple[torch.Tensor, torch.Tensor]:
        """Log of the mean predictive probability over the rows of ``thetas``."""
        outs = [fn(th) for th in thetas]
        stacked = torch.stack([o[0] for o in outs])
        return torch.logsumexp(stacked, dim=0) - math.log(len(outs)), outs[0][1]

    def _evaluate_choices(self, thetas, enc: EncodedChoices, chunks, split: str) -> dict[str, float]:
        preds, golds, nll = [], [], 0.0
        for idx in chunks:
            logp, labels = self._averaged(thetas, lambda th, idx=idx: self._choice_logp(th, enc, idx))
            labels = labels.to(logp.device)
            nll += float(-logp.gather(1, labels[:, None]).sum())
            preds.extend(logp.argmax(1).tolist())
            golds.extend(labels.tolist())
        n = len(golds)
        options = [ex.options for ex in self.task.split(split)]
        pred_text = [options[i][p] for i, p in enumerate(preds)]
        gold_text = [options[i][g] for i, g in enumerate(golds)]
        return {
            "accuracy": sum(p == g for p, g in zip(preds, golds)) / n,
            "macro_f1": macro_f1(pred_text, gold_text),
            "loss": nll / n,
            "chance_accuracy": sum(1.0 / len(o) for o in options) / n,
            "n": float(n),
        }

    def _evaluate_tokens(self, thetas, enc: EncodedTokens, chunks) -> dict[str, float]:
        correct = total = exact = 0
        nll = 0.0
        for idx in chunks:
            logp, labels = self._averaged(thetas, lambda th, idx=idx: self._token_logp(th, enc, idx))
            labels = labels.to(logp.device)
            mask = labels != IGNORE
            tok_lp = logp.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
            nll += float(-(tok_lp * mask).sum())
            hit = logp.argmax(-1) == labels  # (B, T')
            correct += int((hit & mask).sum())
            exact += int((hit | ~mask).all(1).sum())
            total += int(mask.sum())
        out = {
            "token_accuracy": correct / total,
            "loss": nll / total,
            "perplexity": math.exp(min(nll / total, 50.0)),
            "n": float(len(enc)),
        }
        if self.kind == "text2text":
            # every target token (and the end-of-sequence token after it) is the argmax under teacher
            # forcing: exactly when greedy decoding would produce the target's tokens and stop
            out["exact_match"] = exact / len(enc)
        return out

    # -- optional extension: peft's merges and Arrow routing over a zoo (liftpeft.objective.MergeObjective)
    def merge_adapters(self, thetas, weights, combination_type, *, density=None, seed=0) -> torch.Tensor:
        from liftpeft.peft_integration.merge import merge_adapters

        return merge_adapters(self.backbone, thetas, weights, combination_type, density=density, seed=seed)

    def arrow_objective(self, experts, *, top_k: int, router_temperature: float, seed: int):
        from liftpeft.peft_integration.arrow import arrow_objective

        return arrow_objective(self, experts, top_k=top_k, router_temperature=router_temperature, seed=seed)

    @torch.no_grad()
    def generate(
        self,
        thetas: torch.Tensor,
        split: str = "test",
        idx: list[int] | None = None,
        max_new_tokens: int | None = None,
    ) -> list[str]:
        """Greedy continuations of the inputs of examples ``idx`` of ``split`` (text-to-text, causal LMs).

        ``thetas`` (d,) or (M, d): with several adapters each step takes the argmax of their mean
        predictive. Decoding stops at the end-of-sequence token or after ``max_new_tokens`` (default:
        the reference's length in tokens + 8). One example at a time with a KV cache per adapter:
        meant for a check on a few examples, not for scoring a whole split.
        """
        if self.kind != "text2text" or self.backbone.family != "causal":
            raise ValueError(f"generate needs a text-to-text task on a causal LM; {self.name!r} is not one")
        thetas = thetas[None] if thetas.dim() == 1 else thetas
        enc = self.encoded(split)
        rows = range(len(enc)) if idx is None else idx
        texts = []
        for i in rows:
            n_src = sum(label == IGNORE for label in enc.labels[i])
            limit = max_new_tokens if max_new_tokens is not None else len(enc.inputs[i]) - n_src + 8
            new = self._greedy(thetas, list(enc.inputs[i][:n_src]), limit)
            texts.append(self.backbone.tokenizer.decode(new, skip_special_tokens=True))
        return texts

    def _greedy(self, thetas: torch.Tensor, prompt: list[int], limit: int) -> list[int]:
        """Greedy token ids after ``prompt`` (the end-of-sequence token excluded)."""
        import inspect

        base_forward = self.backbone.model.get_base_model().forward
        cache_key = "cache" if "cache" in inspect.signature(base_forward).parameters else "past_key_values"
        device = self.backbone.device
        caches: list[Any] = [None] * len(thetas)
        step = torch.tensor([prompt], device=device)  # (1, T): the prompt first, then one token a step
        new: list[int] = []
        for _ in range(limit):
            mask = torch.ones(1, len(prompt) + len(new), dtype=torch.long, device=device)
            probs = 0.0
            for j, th in enumerate(thetas):
                kwargs = {"input_ids": step, "attention_mask": mask, "use_cache": True, cache_key: caches[j]}
                out = self.backbone.forward(th, _bypass_cache=True, **kwargs)
                caches[j] = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
                probs = probs + torch.softmax(out.logits[0, -1].float(), -1)
            token = int(probs.argmax())
            if token == self.backbone.tokenizer.eos_token_id:
                break
            new.append(token)
            step = torch.tensor([[token]], device=device)
        return new
