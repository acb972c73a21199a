"""MBC: spherical k-means of adapters recovers planted clusters; a new task starts from its cluster."""

import itertools

import pytest
import torch

from liftpeft.core.kmeans import spherical_kmeans
from liftpeft.methods import MetaProblem, build_method
from liftpeft.methods.mbc import cluster_adapters
from liftpeft.methods.task_similarity import letter_count_embedder

THEMES = ("zzz", "kkk", "www")


def same_partition(labels, planted):
    """Equal up to a renaming of the clusters."""
    k = int(planted.max()) + 1
    return any(torch.equal(torch.tensor(perm)[labels], planted) for perm in itertools.permutations(range(k)))


def test_spherical_kmeans_clusters_by_direction_not_norm():
    g = torch.Generator().manual_seed(0)
    directions = torch.nn.functional.normalize(torch.randn(3, 20, generator=g), dim=1)
    planted = torch.arange(30) % 3
    norms = torch.linspace(0.1, 10.0, 30)[torch.randperm(30, generator=g)]  # norms that mislead Euclid
    x = norms[:, None] * (directions[planted] + 0.1 * torch.randn(30, 20, generator=g))
    labels, centers = spherical_kmeans(x, 3, n_init=5, generator=torch.Generator().manual_seed(1))
    assert same_partition(labels, planted)
    assert torch.allclose(centers.norm(dim=1), torch.ones(3, dtype=torch.float64))


class QuadraticTask:
    """``L(theta) = mean_i ||theta - y_i||^2 / 2`` with ``y_i`` scattered around the task's optimum."""

    kind = "regression"
    primary_metric = "loss"
    higher_is_better = False

    def __init__(self, name, optimum, seed, n=16, theme="plain"):
        g = torch.Generator().manual_seed(seed)
        self.name = name
        self.theme = theme
        self.y = optimum + 0.05 * torch.randn(n, optimum.shape[0], generator=g)

    def n_examples(self, split="train"):
        return self.y.shape[0]

    def loss(self, theta, idx=None, split="train"):
        y = self.y if idx is None else self.y[idx]
        return 0.5 * (theta - y).square().sum(-1).mean()

    def example_texts(self, split="train"):
        return [f"{self.theme} example {i}" for i in range(self.n_examples(split))]

    def evaluate(self, thetas, split="test"):
        thetas = thetas[None] if thetas.dim() == 1 else thetas
        return {"loss": float(self.loss(thetas.mean(0)))}


@pytest.fixture(scope="module")
def planted_tasks():
    """Nine tasks whose optima (relative to theta0) point in one of three planted directions."""
    g = torch.Generator().manual_seed(0)
    theta0 = torch.randn(12, generator=g)  # a shared "random A" every adapter starts from
    directions = torch.nn.functional.normalize(torch.randn(3, 12, generator=g), dim=1)
    planted = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    scales = torch.linspace(0.5, 2.0, 9)
    tasks = [
        QuadraticTask(f"q{i}", theta0 + scales[i] * directions[c], seed=i, theme=THEMES[c])
        for i, c in enumerate(planted)
    ]
    return MetaProblem(tasks, theta0), planted, theta0, directions


def test_cluster_adapters_is_relative_to_the_initialisation(planted_tasks):
    problem, planted, theta0, _ = planted_tasks
    optima = torch.stack([t.y.mean(0) for t in problem.train])
    assert same_partition(cluster_adapters(optima, 3, seed=0, theta0=theta0), planted)
    with pytest.raises(ValueError, match="initialisation"):
        cluster_adapters(theta0.repeat(3, 1), 2, seed=0, theta0=theta0)


def test_mbc_recovers_planted_clusters_and_starts_a_new_task_from_its_own(planted_tasks):
    problem, planted, theta0, directions = planted_tasks
    settings = dict(
        n_clusters=3, task_steps=150, task_lr=0.05, cluster_steps=150, cluster_lr=0.05, adapt_steps=0
    )
    mbc = build_method("mbc", **settings)
    state = mbc.meta_train(problem, seed=0)
    assert same_partition(state.labels, planted)
    new_task = QuadraticTask("new", theta0 + 1.2 * directions[1], seed=99)
    cluster = mbc.assign(state, new_task)
    assert cluster == int(state.labels[1])  # the cluster of task q1, which shares direction 1
    start = mbc.adapt(state, new_task, seed=0)[0]
    assert torch.equal(start, state.adapters[cluster])  # adapt_steps=0: the cluster adapter itself


def test_mbc_assigns_by_task_embedding(planted_tasks):
    problem, _, theta0, _ = planted_tasks
    settings = dict(n_clusters=3, task_steps=150, task_lr=0.05, cluster_steps=5, assign="embedding")
    mbc = build_method("mbc", **settings, embedder=letter_count_embedder)
    state = mbc.meta_train(problem, seed=0)
    new_task = QuadraticTask("new", theta0, seed=99, theme=THEMES[2])
    assert mbc.assign(state, new_task) == int(state.labels[2])


def test_mbc_refuses_more_clusters_than_tasks(planted_tasks):
    problem, *_ = planted_tasks
    with pytest.raises(ValueError, match="n_clusters=10"):
        build_method("mbc", n_clusters=10, task_steps=1).meta_train(problem, seed=0)
    with pytest.raises(ValueError, match="assign"):
        build_method("mbc", assign="nearest")
