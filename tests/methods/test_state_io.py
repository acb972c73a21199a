"""Every registered method declares what runners need, and its state round-trips through state_io."""

import dataclasses
import json

import pytest
import torch

from liftpeft.learned_prior import LearnedPrior
from liftpeft.methods import available_methods, build_method
from liftpeft.methods.base import RunContext
from liftpeft.methods.state_io import STATE_JSON, STATE_TENSORS, load_state, save_state

from .test_end_to_end import TINY


def assert_same(a, b, where="state"):
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, torch.Generator):
        assert torch.equal(a.get_state(), b.get_state()), where
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, dict):
        assert set(a) == set(b), where  # dicts compare as ==: order aside
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("name", sorted(available_methods()))
def test_method_declares_and_its_state_round_trips(name, tiny_problem, tmp_path):
    info = available_methods()[name]
    assert info.state_types, f"{name} declares no state_types"
    fields = {f.name for f in dataclasses.fields(info.config_class)}
    # test-time settings are declared, not guessed; today's declarations are exactly the adapt_* ones
    assert set(info.test_time_fields) == {f for f in fields if f.startswith("adapt_")}
    assert info.budget_field is None or info.budget_field in fields
    problem, _ = tiny_problem
    state = build_method(name, **TINY[name]).meta_train(problem, seed=0)
    assert isinstance(state, info.state_types)
    save_state(tmp_path / "s", state)
    assert_same(state, load_state(tmp_path / "s", info.state_types))


def test_nested_containers_generators_and_undeclared_classes(tmp_path):
    @dataclasses.dataclass
    class Inner:
        x: torch.Tensor
        tag: tuple

    generator = torch.Generator().manual_seed(3)
    torch.randn(2, generator=generator)
    state = {"a": [Inner(torch.arange(3), (1, "b", None))], 2: {"__odd": 1.5}, "g": generator}
    save_state(tmp_path, state)
    assert_same(state, load_state(tmp_path, (Inner,)))
    assert load_state(tmp_path, ()) is None  # Inner is not declared: refused, not imported
    assert json.loads((tmp_path / STATE_JSON).read_text())["format_version"] == 1


def test_a_torn_write_reads_as_absent(tmp_path):
    save_state(tmp_path, {"w": torch.ones(3)})
    save_state(tmp_path / "other", {"w": torch.zeros(4)})
    (tmp_path / STATE_TENSORS).write_bytes((tmp_path / "other" / STATE_TENSORS).read_bytes())
    assert load_state(tmp_path) is None


def test_learned_prior_keeps_its_format_with_siblings(tmp_path):
    def prior(k):
        return LearnedPrior(torch.ones(k) / k, torch.zeros(k, 2), torch.ones(k, 2), torch.zeros(2), 0.1, 0.2)

    main = prior(2)
    main.siblings = {1: prior(1)}
    save_state(tmp_path, main)
    assert (tmp_path / "prior.json").is_file() and (tmp_path / "k1" / "prior.json").is_file()
    loaded = load_state(tmp_path, (LearnedPrior,))
    assert_same(main, loaded)


def _interrupt_after_first_checkpoint(monkeypatch):
    from liftpeft.methods.lift import trainer

    original = trainer.save_checkpoint

    class Killed(Exception):
        pass

    def save_then_die(folder, state):
        original(folder, state)
        raise Killed

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_die)
    return Killed


# the LiFT trainers; the gradient-based meta-learners have test_meta_learning_resume.py
_LIFT_RESUMABLE = [
    n for n, i in sorted(available_methods().items()) if i.resumable_mid_run and "LiFT" in i.family
]


@pytest.mark.parametrize("name", _LIFT_RESUMABLE)
def test_resumable_method_killed_mid_run_resumes_bit_for_bit(name, tiny_problem, tmp_path, monkeypatch):
    problem, _ = tiny_problem
    method = build_method(name, **TINY[name])
    reference = method.meta_train(problem, seed=0, run=RunContext(None, checkpoint_every=10))
    run = RunContext(tmp_path / "run", resume=True, checkpoint_every=10)
    with monkeypatch.context() as patch:
        killed = _interrupt_after_first_checkpoint(patch)
        with pytest.raises(killed):
            method.meta_train(problem, seed=0, run=run)
    assert (tmp_path / "run" / "checkpoint" / "state.json").is_file()
    resumed = method.meta_train(problem, seed=0, run=run)
    for prior in (resumed, *resumed.siblings.values()):  # a wall-clock stamp, not part of the result
        prior.created = reference.created
    for prior in reference.siblings.values():
        prior.created = reference.created
    assert_same(reference, resumed)
