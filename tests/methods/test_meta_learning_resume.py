"""The gradient-based meta-learners continue a killed meta-training run bit for bit."""

import dataclasses
import inspect
import json

import pytest
import torch

from liftpeft.methods import available_methods, build_method
from liftpeft.methods import meta_learning as ml
from liftpeft.methods.base import RunContext

from .test_end_to_end import TINY

META_STEPS = 5  # checkpoints after steps 2, 4 and 5; the interruption falls inside the fourth step
EVERY = 2


def _uses_outer_loop(info) -> bool:
    module = inspect.getmodule(info.factory)
    return "run_meta_training" in inspect.getsource(module)


RESUMABLE = sorted(
    name for name, info in available_methods().items() if info.resumable_mid_run and _uses_outer_loop(info)
)


def test_every_gradient_meta_learner_is_resumable():
    expected = {
        "abml",
        "bmaml",
        "bootstrapped-maml",
        "fo-maml",
        "imaml",
        "imaml-mix",
        "maml",
        "maml-mix",
        "reptile",
    }
    assert expected <= set(RESUMABLE)


def _settings(name: str, **changes) -> dict:
    return {**TINY[name], "meta_steps": META_STEPS, **changes}


def _tensors(state) -> list[tuple[str, torch.Tensor]]:
    if isinstance(state, torch.Tensor):
        return [("", state)]
    return [(f.name, getattr(state, f.name)) for f in dataclasses.fields(state)]


def assert_bit_identical(expected, actual) -> None:
    assert type(expected) is type(actual)
    pairs = list(zip(_tensors(expected), _tensors(actual), strict=True))
    assert pairs
    for (name, a), (_, b) in pairs:
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert torch.equal(a, b), f"{name or 'state'} differs after resuming"


class Interrupted(KeyboardInterrupt):
    pass


def _interrupt_at_visit(monkeypatch, visit: int) -> None:
    """Ctrl-C inside the loop: the ``visit``-th draw of support and query batches raises (mid-step,
    after the step's task draw has advanced the generator)."""
    original, calls = ml.support_query, []

    def support_query(*args, **kwargs):
        calls.append(None)
        if len(calls) == visit:
            raise Interrupted
        return original(*args, **kwargs)

    monkeypatch.setattr(ml, "support_query", support_query)


@pytest.mark.parametrize("name", RESUMABLE)
def test_killed_meta_training_resumes_bit_for_bit(name, tiny_problem, tmp_path, monkeypatch):
    problem, _ = tiny_problem
    method = build_method(name, **_settings(name))
    tasks_per_step = method.config.tasks_per_step
    torch.manual_seed(123)
    reference = method.meta_train(problem, seed=3)

    run = RunContext(tmp_path / "run", resume=True, checkpoint_every=EVERY)
    with monkeypatch.context() as patch:
        _interrupt_at_visit(patch, 3 * tasks_per_step + 1)  # the first visit of the fourth step
        torch.manual_seed(123)
        with pytest.raises(Interrupted):
            build_method(name, **_settings(name)).meta_train(problem, seed=3, run=run)
    saved = json.loads((tmp_path / "run" / ml.CHECKPOINT_DIR / "state.json").read_text())
    assert saved["step"] == 2  # step 3 ran but was not checkpointed: the resumed run redoes it
    assert {p.name for p in (tmp_path / "run" / ml.CHECKPOINT_DIR).iterdir()} == {
        "state.json",
        "state.safetensors",
    }

    torch.manual_seed(999)  # the global RNG comes from the checkpoint, not from the caller
    resumed = build_method(name, **_settings(name)).meta_train(problem, seed=3, run=run)
    assert_bit_identical(reference, resumed)
    assert json.loads((tmp_path / "run" / ml.CHECKPOINT_DIR / "state.json").read_text())["step"] == META_STEPS

    # resuming a finished run returns its result without training again
    with monkeypatch.context() as patch:
        _interrupt_at_visit(patch, 1)
        again = build_method(name, **_settings(name)).meta_train(problem, seed=3, run=run)
    assert_bit_identical(reference, again)


def test_resume_without_a_checkpoint_starts_from_scratch(tiny_problem, tmp_path):
    problem, _ = tiny_problem
    reference = build_method("maml", **_settings("maml")).meta_train(problem, seed=0)
    run = RunContext(tmp_path / "run", resume=True)  # default checkpoint_every
    state = build_method("maml", **_settings("maml")).meta_train(problem, seed=0, run=run)
    assert_bit_identical(reference, state)
    assert (tmp_path / "run" / ml.CHECKPOINT_DIR / "state.safetensors").is_file()


def test_default_checkpoint_every():
    assert ml.default_checkpoint_every(1) == 1
    assert ml.default_checkpoint_every(100) == 5
    assert ml.default_checkpoint_every(2000) == 50
    assert ml.default_checkpoint_every(100_000) == 50


@pytest.mark.parametrize(
    ("name", "changes", "seed", "named"),
    [
        ("maml", {"meta_lr": 2e-3}, 0, "meta_lr (0.001 there, 0.002 now)"),
        ("maml", {}, 1, "the seed"),
        ("fo-maml", {}, 0, "the method"),  # fo-maml shares maml's settings class, not its run
    ],
)
def test_resume_with_other_settings_is_refused(name, changes, seed, named, tiny_problem, tmp_path):
    problem, _ = tiny_problem
    run = RunContext(tmp_path / "run", resume=True, checkpoint_every=EVERY)
    build_method("maml", **_settings("maml", meta_steps=2)).meta_train(problem, seed=0, run=run)
    method = build_method(name, **_settings(name, meta_steps=2, **changes))
    with pytest.raises(ValueError, match="was made by a run with other settings") as err:
        method.meta_train(problem, seed=seed, run=run)
    message = str(err.value)
    assert named in message and "resume with the original settings, or delete" in message
    assert str(tmp_path / "run" / ml.CHECKPOINT_DIR) in message


def test_test_time_settings_do_not_block_a_resume(tiny_problem, tmp_path):
    problem, _ = tiny_problem
    run = RunContext(tmp_path / "run", resume=True, checkpoint_every=EVERY)
    first = build_method("maml", **_settings("maml")).meta_train(problem, seed=0, run=run)
    again = build_method("maml", **_settings("maml", adapt_lr=5e-2)).meta_train(problem, seed=0, run=run)
    assert_bit_identical(first, again)
