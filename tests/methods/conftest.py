"""Tiny problems shared by the method tests: the rule family on a tiny random BERT."""

import pytest
import torch

from liftpeft.data.synthetic import rule_family
from liftpeft.methods import MetaProblem
from liftpeft.peft_integration import PeftBackbone, PeftTaskObjective


@pytest.fixture(scope="session")
def bert_backbone(tiny_models):
    torch.manual_seed(0)
    return PeftBackbone(tiny_models["bert"])


@pytest.fixture(scope="session")
def tiny_problem(bert_backbone):
    """(MetaProblem of 6 rule tasks, 2 held-out task objectives) on the tiny cross-encoder."""
    train = [
        PeftTaskObjective(bert_backbone, t) for t in rule_family(6, seed=0, n_train=16, n_dev=4, n_test=16)
    ]
    test = [
        PeftTaskObjective(bert_backbone, t) for t in rule_family(2, seed=1, n_train=8, n_dev=4, n_test=16)
    ]
    problem = MetaProblem(train, bert_backbone.theta0, description=bert_backbone.describe())
    return problem, test
