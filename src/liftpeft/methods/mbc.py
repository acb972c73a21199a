"""MBC, model-based clustering (Ostapenko et al. 2024): one adapter per cluster of similar tasks.

Meta-training:

1. fine-tune one adapter per training task from the PEFT initialisation ``theta_0``;
2. cluster the tasks by the cosine similarity of their flattened adapters with **spherical k-means**
   (k-means++ seeding, ``n_clusters`` clusters, best of 10 restarts). By default the vectors
   clustered are the displacements ``theta_i - theta_0``: all adapters start from the same random
   LoRA A, which would otherwise dominate every cosine (``relative_to_init=False`` clusters the raw
   adapters);
3. train one adapter per cluster, from ``theta_0``, on the union of its tasks.

A new task starts from the adapter of one cluster and is fine-tuned. Its few examples decide which:
``assign="loss"`` (default) takes the cluster adapter with the lowest mean loss on the new task's
training examples (works for every task and backbone); ``assign="embedding"`` takes the cluster whose
tasks' mean sentence embedding is most cosine-similar to the new task's (needs ``example_texts``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from liftpeft.core.kmeans import spherical_kmeans
from liftpeft.methods.base import CostSpec, MetaProblem, register
from liftpeft.methods.finetune import (
    FINETUNE_TEST_TIME,
    FinetuneConfig,
    TaskAdapterConfig,
    finetune_with,
    train_task_adapters,
)
from liftpeft.methods.task_similarity import TextEmbedder, most_similar, resolve_embedder, task_keys
from liftpeft.methods.union import train_on_union
from liftpeft.objective import TaskObjective

ASSIGNMENTS = ("loss", "embedding")
_N_INIT = 10
_SELECTION_EXAMPLES = 64  # train examples of a new task scored to pick its cluster


@dataclass
class MBCConfig(FinetuneConfig, TaskAdapterConfig):
    n_clusters: int = field(default=5, metadata={"help": "clusters of training tasks (paper: 5, 10)"})
    cluster_steps: int = field(default=500, metadata={"help": "AdamW steps of each cluster's adapter"})
    cluster_lr: float = field(default=1e-3, metadata={"help": "learning rate of the cluster adapters"})
    cluster_batch_size: int = field(default=16, metadata={"help": "examples per cluster-training step"})
    relative_to_init: bool = field(
        default=True, metadata={"help": "cluster theta_i - theta_0 (True) or the raw adapters"}
    )
    assign: str = field(default="loss", metadata={"help": "pick a new task's cluster by: loss | embedding"})
    embedder: TextEmbedder | None = field(
        default=None,
        repr=False,
        compare=False,
        metadata={"help": "assign=embedding: callable texts -> (n, D); default all-MiniLM-L6-v2"},
    )

    def __post_init__(self) -> None:
        FinetuneConfig.__post_init__(self)
        self.check_task_adapter_settings()
        if (
            self.n_clusters < 1
            or self.cluster_steps < 0
            or self.cluster_lr <= 0
            or self.cluster_batch_size < 1
        ):
            raise ValueError("n_clusters >= 1, cluster_steps >= 0, cluster_lr > 0, cluster_batch_size >= 1")
        if self.assign not in ASSIGNMENTS:
            raise ValueError(f"assign must be one of {ASSIGNMENTS}, got {self.assign!r}")


@dataclass
class MBCState:
    """Cluster adapters ``(K, d)``, each training task's cluster ``(N,)``, and cluster keys ``(K, D)``."""

    adapters: torch.Tensor
    labels: torch.Tensor
    task_names: list[str]
    keys: torch.Tensor | None = None


def cluster_adapters(
    thetas: torch.Tensor, n_clusters: int, seed: int, theta0: torch.Tensor | None = None
) -> torch.Tensor:
    """Cluster labels ``(N,)`` of adapters ``(N, d)`` by spherical k-means (of ``thetas - theta0`` if given)."""
    vectors = thetas if theta0 is None else thetas - theta0
    if (vectors.norm(dim=1) == 0).any():
        raise ValueError(
            "an adapter equals the initialisation (zero vector); train the per-task adapters longer"
        )
    labels, _ = spherical_kmeans(vectors, n_clusters, _N_INIT, torch.Generator().manual_seed(seed))
    return labels


@register(
    "mbc",
    "MBC: cluster per-task adapters by cosine similarity, one adapter per cluster; start from the nearest",
    MBCConfig,
    family="adapter zoo",
    state_types=(MBCState,),
    test_time_fields=FINETUNE_TEST_TIME,
    budget_field="task_steps",
    cost=CostSpec(
        "per-task adapter step",
        {"cluster_steps": 1},
        per_task=lambda c: True,
        min_tasks=lambda c: c.n_clusters,
    ),
    resumable_mid_run=False,
)
class MBC:
    name = "mbc"

    def __init__(self, config: MBCConfig | None = None) -> None:
        self.config = config or MBCConfig()
        self._embedder = self.config.embedder

    def meta_train(self, problem: MetaProblem, seed: int) -> MBCState:
        c = self.config
        n = len(problem.train)
        if c.n_clusters > n:
            raise ValueError(
                f"n_clusters={c.n_clusters} exceeds the {n} training tasks; set n_clusters <= {n}"
            )
        keys = None
        if c.assign == "embedding":
            self._embedder = resolve_embedder(self._embedder)
            keys = task_keys(problem.train, self._embedder, self.name)  # (N, D)
        thetas = train_task_adapters(problem.train, problem.theta0, c, seed)
        labels = cluster_adapters(thetas, c.n_clusters, seed, problem.theta0 if c.relative_to_init else None)
        adapters = []
        for j in range(c.n_clusters):
            members = [problem.train[i] for i in (labels == j).nonzero().flatten().tolist()]
            cluster = MetaProblem(members, problem.theta0)
            adapters.append(
                train_on_union(cluster, c.cluster_steps, c.cluster_lr, c.cluster_batch_size, seed + j)
            )
        cluster_keys = None
        if keys is not None:
            cluster_keys = torch.stack([keys[labels == j].mean(0) for j in range(c.n_clusters)])
            cluster_keys = torch.nn.functional.normalize(cluster_keys, dim=1)
        return MBCState(torch.stack(adapters), labels, [t.name for t in problem.train], cluster_keys)

    def assign(self, state: MBCState, task: TaskObjective) -> int:
        """The cluster a new task starts from (see the module docstring)."""
        if self.config.assign == "embedding":
            if state.keys is None:
                raise ValueError(
                    "this MBC state was meta-trained with assign='loss'; it holds no cluster keys"
                )
            self._embedder = resolve_embedder(self._embedder)
            query = task_keys([task], self._embedder, self.name)[0]
            return int(most_similar(query, state.keys, 1)[0])
        probe = torch.arange(min(task.n_examples("train"), _SELECTION_EXAMPLES))
        with torch.no_grad():
            losses = torch.stack([task.loss(theta, probe, "train") for theta in state.adapters])
        return int(losses.argmin())

    def adapt(self, state: MBCState, task: TaskObjective, seed: int) -> torch.Tensor:
        return finetune_with(self.config, task, state.adapters[self.assign(state, task)], seed)
