import pytest
import torch

from liftpeft.objective import TaskObjective, loss_and_grad
from liftpeft.peft_integration import PeftBackbone, PeftTaskObjective
from liftpeft.tasks import ChoiceExample, PairExample, Task, TextExample

CHOICES = [ChoiceExample(f"item {w}", ("red", "green", "blue"), i % 3) for i, w in enumerate("abcdefgh")]
PAIRS = [PairExample(f"copy {w}", w * 3) for w in "abcdefgh"]
TEXTS = [TextExample(f"the cat {w} sat on the mat") for w in "abcdefgh"]

COMBOS = [
    ("bert", "cross", "choice"),
    ("bert", "similarity", "choice"),
    ("gpt2", "cross", "choice"),
    ("gpt2", "cross", "text2text"),
    ("gpt2", "cross", "lm"),
    ("t5", "cross", "choice"),
    ("t5", "cross", "text2text"),
]
EXAMPLES = {"choice": CHOICES, "text2text": PAIRS, "lm": TEXTS}


@pytest.mark.parametrize(("kind", "head", "task_kind"), COMBOS)
def test_losses_are_differentiable_and_metrics_sane(tiny_models, kind, head, task_kind):
    backbone = PeftBackbone(tiny_models[kind], choice_head=head)
    ex = EXAMPLES[task_kind]
    objective = PeftTaskObjective(backbone, Task("t", task_kind, ex, ex[:3], ex))
    assert isinstance(objective, TaskObjective)
    loss, grad = loss_and_grad(objective, backbone.theta0, torch.arange(4))
    assert loss > 0 and grad.shape == (backbone.dim,) and torch.isfinite(grad).all() and grad.abs().sum() > 0
    metrics = objective.evaluate(backbone.theta0)
    assert 0.0 <= metrics[objective.primary_metric] <= 1.0
    # the full-split mean loss equals the average of per-example losses
    per_example = torch.stack([objective.loss(backbone.theta0, torch.tensor([i])) for i in range(len(ex))])
    assert torch.allclose(objective.loss(backbone.theta0), per_example.mean(), atol=1e-5)


def test_averaged_predictive_of_identical_samples_equals_one_sample(tiny_models):
    backbone = PeftBackbone(tiny_models["gpt2"])
    objective = PeftTaskObjective(backbone, Task("t", "choice", CHOICES, [], CHOICES))
    one = objective.evaluate(backbone.theta0)
    two = objective.evaluate(torch.stack([backbone.theta0, backbone.theta0]))
    assert one["loss"] == pytest.approx(two["loss"], abs=1e-6)


def test_task_kinds_a_family_cannot_do_are_refused(tiny_models):
    with pytest.raises(ValueError, match="causal LM"):
        PeftTaskObjective(PeftBackbone(tiny_models["t5"]), Task("t", "lm", TEXTS))
    with pytest.raises(ValueError, match="encoder"):
        PeftTaskObjective(PeftBackbone(tiny_models["bert"]), Task("t", "text2text", PAIRS))
