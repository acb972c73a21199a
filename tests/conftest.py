import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LIFTPEFT_QUIET", "1")

import pytest


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Paths of tiny random models built locally: {"bert": ..., "gpt2": ..., "t5": ...}."""
    from liftpeft.peft_integration.tiny import make_tiny_model

    root = tmp_path_factory.mktemp("tiny-models")
    return {kind: make_tiny_model(kind, root / kind) for kind in ("bert", "gpt2", "t5")}


@pytest.fixture(scope="session")
def rule_tasks(tmp_path_factory):
    """The synthetic rule family on disk: <root>/train/<task>/ and <root>/test/<task>/."""
    from liftpeft.data.synthetic import write_rule_family

    return write_rule_family(tmp_path_factory.mktemp("rule-family"), n_tasks=12, n_test_tasks=4, seed=0)


@pytest.fixture
def one_thread():
    """One torch thread: on a busy machine with few cores, torch's own threads only contend."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
