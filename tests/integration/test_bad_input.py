"""Failure modes a user meets: a non-finite loss while sampling, a full disk while saving."""

import errno

import pytest
import torch

from liftpeft.learned_prior import LearnedPrior
from liftpeft.methods import MetaProblem
from liftpeft.methods import checkpoint as checkpoint_module
from liftpeft.methods.lift import LiftConfig, LiftTrainer, MetaTrainingError


class Quadratic:
    """A tiny pure-torch task whose loss turns NaN after ``nan_after`` calls (if set)."""

    primary_metric, higher_is_better = "loss", False

    def __init__(self, name, center, nan_after=None):
        self.name, self.center, self.nan_after, self.calls = name, center, nan_after, 0

    def n_examples(self, split="train"):
        return 8

    def loss(self, theta, idx=None, split="train"):
        self.calls += 1
        value = 0.5 * (theta - self.center).square().sum()
        return value * float("nan") if self.nan_after is not None and self.calls > self.nan_after else value

    def evaluate(self, thetas, split="test"):
        return {"loss": float(self.loss(thetas.reshape(-1, self.center.numel())[0]))}


def problem(nan_after=None):
    tasks = [
        Quadratic(f"task-{i}", torch.full((3,), float(i)), nan_after if i == 1 else None) for i in range(3)
    ]
    return MetaProblem(tasks, torch.zeros(3))


CONFIG = dict(
    k=1,
    sigma=1.0,
    beta=1.0,
    step_size=1e-2,
    steps=60,
    warmup_steps=10,
    burnin_steps=10,
    thin=2,
    checkpoint_every=10,
    batch_size=4,
)


def test_non_finite_loss_stops_naming_task_step_and_checkpoint(tmp_path):
    trainer = LiftTrainer(problem(nan_after=12), LiftConfig(**CONFIG), seed=0, workdir=tmp_path)
    with pytest.raises(MetaTrainingError) as err:
        trainer.run()
    message = str(err.value)
    assert "task-1" in message and "step" in message and "checkpoint" in message and str(tmp_path) in message
    # the last good checkpoint is intact and resumable with a fixed task
    assert (tmp_path / "checkpoint" / "state.json").is_file()
    resumed = LiftTrainer(problem(), LiftConfig(**CONFIG), seed=0, workdir=tmp_path).run(resume=True)
    assert torch.isfinite(resumed.means).all()


def test_full_disk_while_saving_a_prior_keeps_the_old_one(tmp_path, monkeypatch):
    prior = LiftTrainer(problem(), LiftConfig(**CONFIG), seed=0).run()
    prior.save(tmp_path / "prior")
    before = {p.name: p.read_bytes() for p in (tmp_path / "prior").iterdir()}

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("safetensors.torch.save_file", no_space)  # what atomic.save_tensors calls
    changed = LearnedPrior(
        prior.weights, prior.means + 1, prior.covariances, prior.center, prior.beta, prior.sigma
    )
    with pytest.raises(OSError, match="No space"):
        changed.save(tmp_path / "prior")
    after = {p.name: p.read_bytes() for p in (tmp_path / "prior").iterdir()}
    assert after == before  # nothing half-written, no temporary left behind
    assert torch.equal(LearnedPrior.load(tmp_path / "prior").means, prior.means)


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    trainer = LiftTrainer(problem(), LiftConfig(**CONFIG), seed=0, workdir=tmp_path)
    checkpoint_module.save_checkpoint(tmp_path / "checkpoint", trainer.state_dict())
    before = (tmp_path / "checkpoint" / "state.json").read_text()

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("safetensors.torch.save_file", no_space)
    trainer.step = 99
    with pytest.raises(OSError, match="No space"):
        checkpoint_module.save_checkpoint(tmp_path / "checkpoint", trainer.state_dict())
    assert (tmp_path / "checkpoint" / "state.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
