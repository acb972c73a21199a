"""LoRA-Retriever (Zhao et al. 2024): retrieve the training adapters of the most similar tasks.

Meta-training fine-tunes one adapter per training task and keys each task by the mean sentence
embedding of its training inputs (all-MiniLM-L6-v2 unless another embedder is given). A new task is
keyed the same way from its few training inputs; the ``top_k`` most cosine-similar training tasks
are retrieved, and their adapters are composed:

* ``retriever-mixture``: the mixture of the retrieved adapters' *outputs* (uniform weights). Each
  retrieved adapter is fine-tuned on the new task separately (``adapt_steps`` each; K times the cost
  of one fine-tuning) and the K results are returned as the ``(K, d)`` samples, whose averaged
  predictive distribution is exactly the output mixture (``TaskObjective.evaluate`` of several
  adapters). ``finetune_members=False`` gives the paper's training-free mixture instead.
* ``retriever-fusion``: the average of the retrieved adapters' *parameters*, then fine-tuned.

``top_k = 5`` by default; ``"all"`` uses every training adapter. Tasks must offer
``example_texts(split)`` (``PeftTaskObjective`` does).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from liftpeft.methods.base import CostSpec, MetaProblem, register
from liftpeft.methods.finetune import (
    FINETUNE_TEST_TIME,
    FinetuneConfig,
    TaskAdapterConfig,
    finetune_with,
    train_task_adapters,
)
from liftpeft.methods.task_similarity import TextEmbedder, most_similar, resolve_embedder, task_keys
from liftpeft.objective import TaskObjective


@dataclass
class RetrieverConfig(FinetuneConfig, TaskAdapterConfig):
    top_k: int | str = field(default=5, metadata={"help": "adapters retrieved per new task, or 'all'"})
    finetune_members: bool = field(
        default=True, metadata={"help": "mixture: fine-tune each retrieved adapter on the new task"}
    )
    embedder: TextEmbedder | None = field(
        default=None,
        repr=False,
        compare=False,
        metadata={"help": "callable texts -> (n, D) embeddings; default all-MiniLM-L6-v2 (offline)"},
    )

    def __post_init__(self) -> None:
        FinetuneConfig.__post_init__(self)
        self.check_task_adapter_settings()
        if self.top_k != "all" and not (isinstance(self.top_k, int) and self.top_k >= 1):
            raise ValueError(f"top_k must be a positive integer or 'all', got {self.top_k!r}")

    @property
    def k(self) -> int | None:
        return None if self.top_k == "all" else int(self.top_k)


@dataclass
class RetrieverState:
    """Per-task adapters ``(N, d)``, their task keys ``(N, D)`` and the training task names."""

    adapters: torch.Tensor
    keys: torch.Tensor
    task_names: list[str]


class _Retriever:
    name = "retriever"
    compose = "mixture"

    def __init__(self, config: RetrieverConfig | None = None) -> None:
        self.config = config or RetrieverConfig()
        self._embedder = self.config.embedder

    def _embed(self) -> TextEmbedder:
        self._embedder = resolve_embedder(self._embedder)
        return self._embedder

    def meta_train(self, problem: MetaProblem, seed: int) -> RetrieverState:
        keys = task_keys(problem.train, self._embed(), self.name)  # fail on missing texts before training
        adapters = train_task_adapters(problem.train, problem.theta0, self.config, seed)
        return RetrieverState(adapters, keys, [t.name for t in problem.train])

    def retrieve(self, state: RetrieverState, task: TaskObjective) -> torch.Tensor:
        """Indices of the retrieved training tasks for ``task``, most similar first."""
        query = task_keys([task], self._embed(), self.name)[0]
        return most_similar(query, state.keys, self.config.k)

    def adapt(self, state: RetrieverState, task: TaskObjective, seed: int) -> torch.Tensor:
        chosen = state.adapters[self.retrieve(state, task)]  # (K, d)
        if self.compose == "fusion":
            return finetune_with(self.config, task, chosen.mean(0), seed)
        if not self.config.finetune_members:
            return chosen.clone()
        return torch.cat(
            [finetune_with(self.config, task, theta, seed + j) for j, theta in enumerate(chosen)]
        )


@register(
    "retriever-mixture",
    "LoRA-Retriever mixture: average the outputs of the K most similar tasks' adapters, each fine-tuned",
    RetrieverConfig,
    family="adapter zoo",
    state_types=(RetrieverState,),
    test_time_fields=FINETUNE_TEST_TIME,
    budget_field="task_steps",
    cost=CostSpec(
        "per-task adapter step",
        {"cluster_steps": 1},
        per_task=lambda c: True,
        min_tasks=lambda c: c.top_k if isinstance(c.top_k, int) else 1,
    ),
    resumable_mid_run=False,
)
class RetrieverMixture(_Retriever):
    name = "retriever-mixture"
    compose = "mixture"


@register(
    "retriever-fusion",
    "LoRA-Retriever fusion: average the parameters of the K most similar tasks' adapters, then fine-tune",
    RetrieverConfig,
    family="adapter zoo",
    state_types=(RetrieverState,),
    test_time_fields=FINETUNE_TEST_TIME,
    budget_field="task_steps",
    cost=CostSpec(
        "per-task adapter step",
        {"cluster_steps": 1},
        per_task=lambda c: True,
        min_tasks=lambda c: c.top_k if isinstance(c.top_k, int) else 1,
    ),
    resumable_mid_run=False,
)
class RetrieverFusion(_Retriever):
    name = "retriever-fusion"
    compose = "fusion"
