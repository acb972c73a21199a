"""ProtoNet / ProtoNet-LITE: the embedding extension, prototypes of option texts, unbiased LITE."""

import itertools

import pytest
import torch

from liftpeft.methods import build_method, scoring_objective
from liftpeft.methods.protonet import PrototypeObjective, prototype_log_probs
from liftpeft.objective import ChoiceEmbeddings, EmbeddingObjective
from liftpeft.peft_integration import PeftBackbone, PeftTaskObjective
from liftpeft.tasks import ChoiceExample, Task, TextExample

COLORS = [ChoiceExample(f"item {w}", ("red", "green", "blue"), i % 3) for i, w in enumerate("abcdefgh")]
FREE = [ChoiceExample(f"q {w}", (f"ans {w}", f"not {w}"), i % 2) for i, w in enumerate("abcdefgh")]


@pytest.mark.parametrize(
    ("kind", "head"), [("bert", "cross"), ("bert", "similarity"), ("gpt2", "cross"), ("t5", "cross")]
)
def test_embed_gives_differentiable_input_and_option_embeddings(tiny_models, kind, head):
    backbone = PeftBackbone(tiny_models[kind], choice_head=head)
    task = PeftTaskObjective(backbone, Task("colors", "choice", COLORS, COLORS[:2], COLORS))
    assert isinstance(task, EmbeddingObjective)
    theta = (backbone.theta0 + 0.1 * torch.randn(backbone.dim)).requires_grad_(True)
    emb = task.embed(theta, torch.tensor([0, 4]))
    assert emb.inputs.shape[0] == 2 and emb.options.shape == (3, emb.inputs.shape[1])
    assert emb.option_ids.tolist() == [0, 1, 2] and emb.n_options.tolist() == [3, 3]
    assert emb.gold_classes.tolist() == [0, 1]  # "red", "green": the same ids in every split
    assert task.embed(theta, torch.tensor([1]), "test").gold_classes.tolist() == [1]
    (emb.inputs.sum() + emb.options.sum()).backward()
    assert theta.grad.abs().sum() > 0
    assert task.example_texts("dev") == ["item a", "item b"]


def test_prototypes_average_the_option_text_with_its_support_examples():
    h = torch.eye(3)
    query = ChoiceEmbeddings(
        inputs=torch.tensor([[1.0, 0.0, 0.0]]),
        options=torch.stack([h[1], h[2]]),  # option texts of class ids 7 and 9
        option_ids=torch.tensor([7, 9]),
        row_option=torch.tensor([0, 1]),
        n_options=torch.tensor([2]),
        labels=torch.tensor([0]),
    )
    support = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    classes = torch.tensor([7, 7, 4])  # class 4 is not among the query's options: ignored
    logp = prototype_log_probs(query, support, classes, scale=2.0)
    proto7 = (h[1] + 2 * h[0]) / 3
    scores = torch.tensor([-2.0 * (h[0] - proto7).square().sum(), -2.0 * (h[0] - h[2]).square().sum()])
    assert torch.allclose(logp[0], torch.log_softmax(scores, 0))
    no_support = prototype_log_probs(query, support[:0], classes[:0], scale=2.0)  # similarity-head limit
    assert torch.allclose(no_support[0], torch.log_softmax(torch.tensor([-4.0, -4.0]), 0))


def test_lite_gradient_averaged_over_all_subsets_equals_the_full_gradient(bert_backbone):
    task = PeftTaskObjective(bert_backbone, Task("colors", "choice", COLORS, [], COLORS))
    proto = PrototypeObjective(task, scale=10.0)
    theta = bert_backbone.theta0 + 0.2 * torch.randn(
        bert_backbone.dim, generator=torch.Generator().manual_seed(0)
    )
    query_idx, pool = torch.tensor([0, 1]), torch.arange(2, 7)  # 5 support examples

    def grad_and_loss(tracked, rest):
        leaf = theta.clone().requires_grad_(True)
        query = task.embed(leaf, query_idx)
        x, classes = proto.support_embeddings(leaf, tracked, rest)
        loss = torch.nn.functional.nll_loss(prototype_log_probs(query, x, classes, 10.0), query.labels)
        (grad,) = torch.autograd.grad(loss, leaf)
        return grad, float(loss.detach())

    full_grad, full_loss = grad_and_loss(pool, pool[:0])
    grads = []
    for subset in itertools.combinations(range(5), 2):
        keep = torch.zeros(5, dtype=torch.bool)
        keep[list(subset)] = True
        grad, loss = grad_and_loss(pool[keep], pool[~keep])
        assert loss == pytest.approx(full_loss, abs=1e-6)  # LITE changes gradients only
        grads.append(grad)
    assert torch.allclose(torch.stack(grads).mean(0), full_grad, atol=1e-6, rtol=1e-4)
    assert not torch.allclose(grads[0], full_grad, atol=1e-6, rtol=1e-4)


def test_scoring_by_prototypes_reports_the_usual_metrics(bert_backbone):
    task = PeftTaskObjective(bert_backbone, Task("free", "choice", FREE, [], FREE))
    method = build_method("protonet", meta_steps=0)
    scorer = scoring_objective(method, task)
    one = scorer.evaluate(bert_backbone.theta0)
    assert set(one) == set(task.evaluate(bert_backbone.theta0))
    assert one["chance_accuracy"] == 0.5 and 0 <= one["macro_f1"] <= 1
    two = scorer.evaluate(torch.stack([bert_backbone.theta0, bert_backbone.theta0]))
    assert one["loss"] == pytest.approx(two["loss"], abs=1e-6)


def test_protonet_refuses_tasks_that_are_not_classification(tiny_models, bert_backbone):
    lm = PeftTaskObjective(PeftBackbone(tiny_models["gpt2"]), Task("lm", "lm", [TextExample("to be or not")]))
    with pytest.raises(ValueError, match="classification"):
        build_method("protonet-lite").adapt(bert_backbone.theta0, lm, seed=0)

    class NoEmbeddings:
        name, kind = "opaque", "choice"

    with pytest.raises(TypeError, match="embed"):
        PrototypeObjective(NoEmbeddings())
