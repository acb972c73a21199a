"""ProtoNet and ProtoNet-LITE (Snell et al. 2017; Bronskill et al. 2021) for multiple-choice tasks.

The adapter ``theta`` adapts the encoder; an example is classified by the distance of its input
embedding to one prototype per option, ``p(option j | x) = softmax_j(-scale ||f(x) - c_j||^2)``, with
embeddings from ``task.embed(theta, ...)`` (mean-pooled, L2-normalised hidden states).

What a prototype is. A class is an option *text* (the task's option vocabulary), so a class is
shared by every example that offers that text. The prototype of option text ``c`` is the average of
the embedding of ``c`` itself and of the support inputs whose gold option is ``c``:

    c = (e(c) + sum_{s in S, gold(s) = c} f(x_s)) / (1 + n_c)

For classification with a fixed label set ("yes" / "no") this is ProtoNet with the label text as
one extra, always present, support point. For free-text options that differ per example (BIG-bench
multiple choice) most options never occur as a support label, their prototype is ``e(c)`` alone and
the classifier reduces to the similarity head (input-option embedding distance), which is the only
sensible meaning a per-example option can have; any option text repeated across examples still
collects its support examples.

Episodes. During meta-training a step draws a task, ``query_size`` query examples of its train split
and a support set from the rest of that split (``support_size`` of them, all if ``None``); the loss
is the query cross-entropy. LITE back-propagates through a random subset of ``lite_backprop``
support examples only: the others are embedded without a graph, and the subset's gradient is scaled
by ``|S| / |H|`` so that the prototype gradient stays unbiased (forward values are unchanged).

At test time the support set is the new task's train split. ``adapt_steps = 0`` (default) is classic
ProtoNet: no gradient step on the new task; more steps fine-tune ``theta`` on the support set with
the same episodic loss. The predictions are prototype-based, so adapters of these methods are scored
by ``method.scoring_objective(task)`` (a ``PrototypeObjective``), not by the task's own head; use
``liftpeft.methods.base.scoring_objective(method, task)`` in runners.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from liftpeft.methods.base import MetaProblem, register
from liftpeft.methods.finetune import FINETUNE_TEST_TIME, FinetuneConfig, finetune
from liftpeft.methods.union import train_on_union
from liftpeft.metrics import macro_f1
from liftpeft.objective import ChoiceEmbeddings, EmbeddingObjective, TaskObjective


def prototype_log_probs(
    query: ChoiceEmbeddings, support_inputs: torch.Tensor, support_classes: torch.Tensor, scale: float
) -> torch.Tensor:
    """Log-softmax over each query example's options, ``(B, max_options)`` with ``-inf`` pads.

    ``support_inputs`` (S, H) and ``support_classes`` (S,) (gold option-vocabulary ids) may be empty.
    """
    options = query.options[query.row_option]  # (R, H) embedding of each pair's option text
    same = query.row_classes[:, None] == support_classes[None, :].to(query.row_classes)  # (R, S)
    match = same.to(options)
    protos = (options + match @ support_inputs.to(options)) / (1.0 + match.sum(1, keepdim=True))  # (R, H)
    n_opt = query.n_options
    owner = torch.repeat_interleave(torch.arange(len(n_opt), device=n_opt.device), n_opt)  # (R,)
    scores = -scale * (query.inputs[owner] - protos).square().sum(-1)  # (R,)
    col = torch.cat([torch.arange(int(n), device=n_opt.device) for n in n_opt])
    grouped = torch.full((len(n_opt), int(n_opt.max())), -math.inf, device=scores.device, dtype=scores.dtype)
    grouped = grouped.index_put((owner, col), scores)
    return torch.log_softmax(grouped, dim=-1)


def require_classification(task: TaskObjective, method: str) -> EmbeddingObjective:
    kind = getattr(task, "kind", None)
    if kind != "choice":
        raise ValueError(
            f"{method} works on classification (multiple-choice) tasks only; task {task.name!r} is "
            f"{kind!r}. Use it on choice benchmarks (BIG-bench classification, the rule family)"
        )
    if not callable(getattr(task, "embed", None)):
        raise TypeError(
            f"{method} needs encoder embeddings, but task {task.name!r} ({type(task).__name__}) has no "
            "embed(theta, idx, split) method; use a PeftTaskObjective"
        )
    return task  # type: ignore[return-value]


class PrototypeObjective:
    """A multiple-choice task scored by prototypes from its ``support_split`` (a ``TaskObjective``).

    ``loss(theta, idx, split)``: query cross-entropy of examples ``idx``; the support is the support
    split without the queried examples, subsampled to ``support_size``, with LITE back-propagation
    through ``lite_backprop`` of them if set. ``evaluate``: prototypes from the whole support split
    (evaluating on the support split itself therefore includes each example in its own prototype).
    """

    def __init__(
        self,
        task: TaskObjective,
        *,
        scale: float = 10.0,
        support_split: str = "train",
        support_size: int | None = None,
        lite_backprop: int | None = None,
        seed: int = 0,
        method: str = "protonet",
    ) -> None:
        self.task = require_classification(task, method)
        self.name = task.name
        self.primary_metric = "accuracy"
        self.higher_is_better = True
        self.scale = float(scale)
        self.support_split = support_split
        self.support_size = support_size
        self.lite_backprop = lite_backprop
        self.generator = torch.Generator().manual_seed(seed)

    def n_examples(self, split: str = "train") -> int:
        return self.task.n_examples(split)

    def _support_indices(self, idx: torch.Tensor, split: str) -> torch.Tensor:
        pool = torch.arange(self.task.n_examples(self.support_split))
        if split == self.support_split:
            pool = pool[~torch.isin(pool, idx.cpu())]
        if self.support_size is not None and len(pool) > self.support_size:
            pool = pool[torch.randperm(len(pool), generator=self.generator)[: self.support_size]]
        return pool

    def _support(self, theta: torch.Tensor, pool: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Support embeddings of ``pool``, back-propagating through a random ``lite_backprop`` of them."""
        h = len(pool) if self.lite_backprop is None else min(self.lite_backprop, len(pool))
        order = (
            torch.randperm(len(pool), generator=self.generator) if h < len(pool) else torch.arange(len(pool))
        )
        return self.support_embeddings(theta, pool[order[:h]], pool[order[h:]])

    def support_embeddings(
        self, theta: torch.Tensor, tracked: torch.Tensor, rest: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Input embeddings ``(S, H)`` and gold classes ``(S,)`` of the support ``tracked`` + ``rest``.

        Only ``tracked`` is back-propagated; when ``rest`` is not empty the tracked rows' gradient is
        scaled by ``S / |tracked|`` (LITE), which makes it unbiased over random subsets of a given size.
        """
        parts, classes = [], []
        if len(tracked):
            emb = self.task.embed(theta, tracked, self.support_split, options=False)
            x = emb.inputs
            if len(rest):
                x = x.detach() + ((len(tracked) + len(rest)) / len(tracked)) * (x - x.detach())
            parts.append(x)
            classes.append(emb.gold_classes)
        if len(rest):
            with torch.no_grad():
                emb = self.task.embed(theta, rest, self.support_split, options=False)
            parts.append(emb.inputs)
            classes.append(emb.gold_classes)
        return torch.cat(parts), torch.cat(classes)

    def _no_support(self, query: ChoiceEmbeddings) -> tuple[torch.Tensor, torch.Tensor]:
        return query.inputs[:0], query.option_ids[:0]

    def loss(
        self, theta: torch.Tensor, idx: torch.Tensor | None = None, split: str = "train"
    ) -> torch.Tensor:
        idx = torch.arange(self.n_examples(split)) if idx is None else idx
        query = self.task.embed(theta, idx, split)
        pool = self._support_indices(idx, split)
        support = self._support(theta, pool) if len(pool) else self._no_support(query)
        logp = prototype_log_probs(query, *support, self.scale)
        return torch.nn.functional.nll_loss(logp, query.labels)

    @torch.no_grad()
    def log_probs(
        self, theta: torch.Tensor, split: str, chunk: int = 32
    ) -> tuple[torch.Tensor, list[ChoiceEmbeddings]]:
        """Per-example option log-probabilities on ``split`` (prototypes from the whole support split)."""
        pool = torch.arange(self.task.n_examples(self.support_split))
        support = [
            self.task.embed(theta, part, self.support_split, options=False) for part in pool.split(chunk)
        ]
        s_inputs = torch.cat([s.inputs for s in support])
        s_classes = torch.cat([s.gold_classes for s in support])
        out, queries = [], []
        for part in torch.arange(self.task.n_examples(split)).split(chunk):
            queries.append(self.task.embed(theta, part, split))
            out.append(prototype_log_probs(queries[-1], s_inputs, s_classes, self.scale))
        width = max(lp.shape[1] for lp in out)
        padded = [torch.nn.functional.pad(lp, (0, width - lp.shape[1]), value=-math.inf) for lp in out]
        return torch.cat(padded), queries

    @torch.no_grad()
    def evaluate(self, thetas: torch.Tensor, split: str = "test") -> dict[str, float]:
        thetas = thetas[None] if thetas.dim() == 1 else thetas
        runs = [self.log_probs(theta, split) for theta in thetas]
        logp = torch.logsumexp(torch.stack([r[0] for r in runs]), 0) - math.log(len(runs))  # (B, O)
        queries = runs[0][1]
        labels = torch.cat([q.labels for q in queries]).to(logp.device)
        preds = logp.argmax(1)
        pred_cls, gold_cls = [], []
        for q, p in zip(queries, preds.split([len(q.labels) for q in queries])):
            starts = q.row_starts
            pred_cls += q.row_classes[starts + p.to(starts.device)].tolist()
            gold_cls += q.gold_classes.tolist()
        n_opt = torch.cat([q.n_options for q in queries]).float()
        return {
            "accuracy": float((preds == labels).float().mean()),
            "macro_f1": macro_f1(pred_cls, gold_cls),
            "loss": float(-logp.gather(1, labels[:, None]).mean()),
            "chance_accuracy": float((1.0 / n_opt).mean()),
            "n": float(len(labels)),
        }


@dataclass
class ProtoNetConfig(FinetuneConfig):
    adapt_steps: int = field(
        default=0,
        metadata={"help": "ProtoNet-loss steps on the new task's support set (0: classic ProtoNet)"},
    )
    meta_steps: int = field(default=1000, metadata={"help": "episodes of meta-training"})
    meta_lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate of meta-training"})
    query_size: int = field(default=8, metadata={"help": "query examples per episode"})
    support_size: int | None = field(
        default=16, metadata={"help": "support examples per episode (None: the rest of the train split)"}
    )
    lite_backprop: int | None = field(
        default=None, metadata={"help": "LITE: support examples back-propagated per episode (None: all)"}
    )
    scale: float = field(default=10.0, metadata={"help": "distance scale: logits are -scale ||f(x) - c||^2"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.meta_steps < 0 or self.meta_lr <= 0 or self.query_size < 1 or not self.scale > 0:
            raise ValueError("meta_steps >= 0, meta_lr > 0, query_size >= 1 and scale > 0 are required")
        for name in ("support_size", "lite_backprop"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be None or >= 1, got {value}")


@dataclass
class ProtoNetLiteConfig(ProtoNetConfig):
    support_size: int | None = field(
        default=None, metadata={"help": "support examples per episode (None: the rest of the train split)"}
    )
    lite_backprop: int | None = field(
        default=4, metadata={"help": "LITE: support examples back-propagated per episode (None: all)"}
    )


@register(
    "protonet",
    "ProtoNet: episodic meta-training of the encoder adapter; classify by option prototypes (choice tasks)",
    ProtoNetConfig,
    family="metric learning",
    state_types=(torch.Tensor,),
    test_time_fields=FINETUNE_TEST_TIME,
    budget_field="meta_steps",
    resumable_mid_run=False,
)
class ProtoNet:
    name = "protonet"

    def __init__(self, config: ProtoNetConfig | None = None) -> None:
        self.config = config or ProtoNetConfig()

    def _objective(self, task: TaskObjective, seed: int) -> PrototypeObjective:
        c = self.config
        return PrototypeObjective(
            task,
            scale=c.scale,
            support_size=c.support_size,
            lite_backprop=c.lite_backprop,
            seed=seed,
            method=self.name,
        )

    def meta_train(self, problem: MetaProblem, seed: int) -> torch.Tensor:
        c = self.config
        episodes = [self._objective(t, seed + i) for i, t in enumerate(problem.train)]
        return train_on_union(
            MetaProblem(episodes, problem.theta0), c.meta_steps, c.meta_lr, c.query_size, seed
        )

    def adapt(self, state: torch.Tensor, task: TaskObjective, seed: int) -> torch.Tensor:
        c = self.config
        objective = self._objective(task, seed)
        theta = finetune(
            objective,
            state,
            steps=c.adapt_steps,
            lr=c.adapt_lr,
            batch_size=c.adapt_batch_size,
            seed=seed,
            weight_decay=c.weight_decay,
        )
        return theta[None]

    def scoring_objective(self, task: TaskObjective) -> PrototypeObjective:
        """Scores this method's adapters: prototypes from ``task``'s train split."""
        return PrototypeObjective(task, scale=self.config.scale, method=self.name)


@register(
    "protonet-lite",
    "ProtoNet-LITE: ProtoNet on whole support sets, back-propagating through a random subset only",
    ProtoNetLiteConfig,
    family="metric learning",
    state_types=(torch.Tensor,),
    test_time_fields=FINETUNE_TEST_TIME,
    budget_field="meta_steps",
    resumable_mid_run=False,
)
class ProtoNetLite(ProtoNet):
    name = "protonet-lite"

    def __init__(self, config: ProtoNetLiteConfig | None = None) -> None:
        super().__init__(config or ProtoNetLiteConfig())
