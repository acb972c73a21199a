"""The clustered task family: task heads drawn from a few clusters, seen through a fixed nonlinear map.

Generative model (classification, ``C`` classes):

    features   f(x) = tanh(W2 tanh(W1 x + b1) + b2)         a fixed random MLP R^p -> R^h ("backbone")
    clusters   mu_k ~ N(0, separation^2 I)                 k = 1..n_clusters, in head space (C, h + 1)
    task i     z_i = i mod n_clusters,  head_i = mu_{z_i} + spread * eps_i
    examples   x ~ N(0, I_p),  y = argmax_c (head_i [f(x); 1])_c,  replaced by a uniform class w.p. ``noise``

The model a method fits is a softmax classifier on the frozen features with the task's adapter as
its head: a full linear head ``theta = [W (C, h), b (C)]`` (``theta0 = 0``), or, with ``head_rank = r``,
a LoRA-like low-rank head ``W = B A``, ``theta = [A (r, h), B (C, r), b (C)]`` with ``theta0`` = (A
random, B = 0, b = 0). The likelihood is a softmax, not Gaussian, so nothing here is conjugate; the
task heads are multi-modal across tasks (one mode per cluster), the structure a K-component prior is
meant to capture.

Note on LiFT. Its mixture is fitted to samples of the *shared* latent ``phi``, not to the task
adapters. With the full linear head every task's likelihood is log-concave in ``theta``, so (Prekopa)
its marginal ``p(D_i | phi) = int N(theta; phi, beta^2) p(D_i | theta) dtheta`` is log-concave in
``phi`` and so is the posterior of ``phi``: it is unimodal however clustered the tasks are, and with
``phi_update`` ``"gibbs"`` / ``"exact"`` / ``"cavity"`` a K = 3 mixture over its samples splits one
blob (measured in ``benchmarks/synthetic_sanity.py``: no gain over K = 1). The one-task ``"sample"``
ablation, whose ``phi`` chases the task just visited, does spread its samples over the clusters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from liftpeft.data.synthetic.base import SyntheticBenchmark, TensorTask, as_rows, task_generator


class RandomFeatureMap:
    """A fixed random two-layer tanh MLP ``R^p -> R^h`` (the frozen backbone of the family).

    Weights ``W1 ~ N(0, 1/p)``, ``W2 ~ N(0, 2/hidden)`` (pre-activations of order 1, features clearly
    nonlinear), biases ``N(0, 0.25)``; all from ``generator``.
    """

    def __init__(self, input_dim: int, feature_dim: int, hidden_dim: int, generator: torch.Generator) -> None:
        self.w1 = torch.randn(hidden_dim, input_dim, generator=generator) / math.sqrt(input_dim)
        self.b1 = 0.5 * torch.randn(hidden_dim, generator=generator)
        self.w2 = torch.randn(feature_dim, hidden_dim, generator=generator) * math.sqrt(2.0 / hidden_dim)
        self.b2 = 0.5 * torch.randn(feature_dim, generator=generator)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, p) -> (n, h)``."""
        return torch.tanh(torch.tanh(x @ self.w1.T + self.b1) @ self.w2.T + self.b2)


@dataclass(frozen=True)
class ClassificationHead:
    """Layout of a task adapter as a softmax head on ``feature_dim`` features.

    ``rank=None``: ``theta = [W (C, h), b (C)]`` flattened. ``rank=r``: ``theta = [A (r, h), B (C, r), b (C)]``
    and ``W = B A``.
    """

    n_classes: int
    feature_dim: int
    rank: int | None = None

    @property
    def dim(self) -> int:
        c, h, r = self.n_classes, self.feature_dim, self.rank
        return c * h + c if r is None else r * h + c * r + c

    def weights(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W (C, h), b (C))`` as differentiable views / products of ``theta`` (d,)."""
        c, h, r = self.n_classes, self.feature_dim, self.rank
        if r is None:
            return theta[: c * h].view(c, h), theta[c * h :]
        a = theta[: r * h].view(r, h)
        b_mat = theta[r * h : r * h + c * r].view(c, r)
        return b_mat @ a, theta[r * h + c * r :]

    def logits(self, theta: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """``(n, h) -> (n, C)``."""
        w, b = self.weights(theta)
        return features @ w.T + b

    def init(self, generator: torch.Generator) -> torch.Tensor:
        """``theta0``: zeros (full head), or A ~ N(0, 1/h), B = 0, b = 0 (low-rank head, as LoRA)."""
        theta = torch.zeros(self.dim)
        if self.rank is not None:
            n_a = self.rank * self.feature_dim
            theta[:n_a] = torch.randn(n_a, generator=generator) / math.sqrt(self.feature_dim)
        return theta


class ClusteredClassificationTask(TensorTask):
    """One task of the clustered family: precomputed features (n, h) and labels (n,) per split.

    ``loss``: mean cross-entropy. ``evaluate`` averages the class probabilities of ``thetas`` (M, d):
    ``accuracy`` (primary), ``loss`` (NLL of the averaged predictive), ``chance_accuracy``, ``n``.
    ``cluster`` is the task's true cluster (for analysis only).
    """

    primary_metric = "accuracy"
    higher_is_better = True

    def __init__(
        self,
        name: str,
        splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
        head: ClassificationHead,
        cluster: int,
        true_head: torch.Tensor,
    ) -> None:
        super().__init__(name, splits)
        self.head = head
        self.cluster = int(cluster)
        self.true_head = true_head  # (C, h + 1): [W | b] of the generating classifier

    def per_example_loss(self, theta: torch.Tensor, x: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor:
        assert x is not None
        return F.cross_entropy(self.head.logits(theta, x.to(theta.dtype)), y, reduction="none")

    @torch.no_grad()
    def evaluate(self, thetas: torch.Tensor, split: str = "test") -> dict[str, float]:
        rows = as_rows(thetas, self.head.dim)
        x, y = self.batch(split)
        assert x is not None
        log_probs = torch.stack([torch.log_softmax(self.head.logits(th, x), -1) for th in rows])  # (M, n, C)
        log_pred = torch.logsumexp(log_probs, 0) - math.log(rows.shape[0])  # (n, C)
        return {
            "accuracy": float((log_pred.argmax(1) == y).float().mean()),
            "loss": float(F.nll_loss(log_pred, y)),
            "chance_accuracy": 1.0 / self.head.n_classes,
            "n": float(len(y)),
        }


@dataclass(kw_only=True)
class ClusteredBenchmark(SyntheticBenchmark):
    """The clustered family; ``centres`` (n_clusters, C, h + 1) are the true cluster heads."""

    centres: torch.Tensor
    features: RandomFeatureMap
    head: ClassificationHead


def clustered_family(
    n_clusters: int = 3,
    n_train_tasks: int = 30,
    n_dev_tasks: int = 3,
    n_test_tasks: int = 30,
    *,
    n_train: int = 10,
    n_train_meta: int | None = None,
    n_dev: int = 10,
    n_test: int = 100,
    input_dim: int = 8,
    feature_dim: int = 16,
    hidden_dim: int = 32,
    n_classes: int = 2,
    separation: float = 1.0,
    spread: float = 0.25,
    noise: float = 0.05,
    head_rank: int | None = None,
    seed: int = 0,
) -> ClusteredBenchmark:
    """Build the clustered classification family (see the module docstring for the model).

    Args:
        n_clusters: number of clusters of task heads; task ``i`` belongs to cluster ``i % n_clusters``.
        n_train_tasks, n_dev_tasks, n_test_tasks: meta-training, meta-dev and meta-test tasks.
        n_train, n_dev, n_test: examples per task in each split (``n_train`` of meta-dev and meta-test
            tasks: the few shots a new task gets).
        n_train_meta: training examples of each meta-training task (default ``n_train``).
        input_dim, feature_dim, hidden_dim: ``p``, ``h`` and the hidden width of the feature MLP.
        n_classes: ``C``.
        separation: std of the cluster heads' entries (sets how far apart clusters are).
        spread: std of a task head around its cluster head.
        noise: probability that a label is replaced by a uniformly random class.
        head_rank: ``None`` for a full linear head, ``r`` for the low-rank (LoRA-like) head.
        seed: every draw comes from generators keyed by ``seed``, role and index.
    """
    if n_clusters < 1 or n_train_tasks < 1 or n_train < 1 or n_classes < 2:
        raise ValueError("n_clusters, n_train_tasks and n_train must be >= 1 and n_classes >= 2")
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise is a probability, got {noise}")
    if separation < 0 or spread < 0:
        raise ValueError("separation and spread must be >= 0")
    if head_rank is not None and head_rank < 1:
        raise ValueError(f"head_rank must be None or >= 1, got {head_rank}")
    features = RandomFeatureMap(input_dim, feature_dim, hidden_dim, task_generator(seed, "clustered", "mlp"))
    head = ClassificationHead(n_classes, feature_dim, head_rank)
    centres = separation * torch.randn(
        n_clusters, n_classes, feature_dim + 1, generator=task_generator(seed, "clustered", "centres")
    )

    n_train_meta = n_train if n_train_meta is None else int(n_train_meta)

    def make(role: str, count: int, n_train: int) -> list[ClusteredClassificationTask]:
        tasks = []
        for i in range(count):
            cluster = i % n_clusters
            gen = task_generator(seed, "clustered", role, i)
            true_head = centres[cluster] + spread * torch.randn(centres[cluster].shape, generator=gen)
            splits = {}
            for split, size in (("train", n_train), ("dev", n_dev), ("test", n_test)):
                sgen = task_generator(seed, "clustered", role, i, split)
                x = torch.randn(size, input_dim, generator=sgen)
                feats = features(x)  # (n, h)
                labels = (feats @ true_head[:, :-1].T + true_head[:, -1]).argmax(1)
                flip = torch.rand(size, generator=sgen) < noise
                random_labels = torch.randint(n_classes, (size,), generator=sgen)
                splits[split] = (feats, torch.where(flip, random_labels, labels))
            tasks.append(
                ClusteredClassificationTask(f"clustered-{role}-{i:03d}", splits, head, cluster, true_head)
            )
        return tasks

    config = {
        "family": "clustered",
        "n_clusters": n_clusters,
        "n_train_tasks": n_train_tasks,
        "n_dev_tasks": n_dev_tasks,
        "n_test_tasks": n_test_tasks,
        "n_train": n_train,
        "n_train_meta": n_train_meta,
        "n_dev": n_dev,
        "n_test": n_test,
        "input_dim": input_dim,
        "feature_dim": feature_dim,
        "hidden_dim": hidden_dim,
        "n_classes": n_classes,
        "separation": separation,
        "spread": spread,
        "noise": noise,
        "head_rank": head_rank,
        "seed": seed,
    }
    return ClusteredBenchmark(
        "clustered",
        make("train", n_train_tasks, n_train_meta),
        make("dev", n_dev_tasks, n_train),
        make("test", n_test_tasks, n_train),
        head.init(task_generator(seed, "clustered", "theta0")),
        config,
        centres=centres,
        features=features,
        head=head,
    )
