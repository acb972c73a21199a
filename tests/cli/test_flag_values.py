"""A flag value of 0 is a value: it reaches the library (and its validation), and beats a config file."""

import json

import pytest

from liftpeft import api
from liftpeft.cli.main import main
from liftpeft.data.synthetic import write_rule_family
from liftpeft.peft_integration.tiny import make_tiny_model

TINY = dict(k=1, steps=12, warmup_steps=4, burnin_steps=4, sigma=1.0, beta=1.0, quiet=True)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("zero-flags")
    make_tiny_model("bert", root / "model")
    write_rule_family(root / "tasks", n_tasks=3, n_test_tasks=1)
    api.meta_train(root / "model", root / "tasks" / "train", root / "prior", **TINY)
    return root


def _meta_train(w, out, *flags):
    model, tasks = str(w / "model"), str(w / "tasks" / "train")
    return main(["meta-train", "--model", model, "--tasks", tasks, "--out", str(out), "--quiet", *flags])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--k", "0"], "k and extra_k must be >= 1, got k=0"),
        (["--steps", "0"], "steps must be >= 1, got 0"),
    ],
)
def test_meta_train_zero_reaches_validation(workspace, tmp_path, capsys, flags, message):
    assert _meta_train(workspace, tmp_path / "p", *flags) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "p" / "prior.json").exists()


def test_zoo_prior_beta_zero_reaches_validation(workspace, tmp_path, capsys):
    assert main(["zoo-prior", "--adapters", str(tmp_path), "--out", str(tmp_path / "p"), "--beta", "0"]) == 1
    assert "beta must be > 0, got 0.0" in capsys.readouterr().err


def _adapt(w, out, *flags):
    task = str(w / "tasks" / "test" / "task-000")
    return main(["adapt", "--prior", str(w / "prior"), "--task", task, "--out", str(out), "--quiet", *flags])


def test_adapt_steps_zero_means_no_step(workspace, tmp_path):
    assert _adapt(workspace, tmp_path / "a", "--steps", "0") == 0
    meta = json.loads((tmp_path / "a" / "liftpeft.json").read_text())
    assert meta["adapt"]["adapt_steps"] == 0


def test_seed_zero_beats_a_config_file(workspace, tmp_path):
    config = tmp_path / "adapt.yaml"
    config.write_text("seed: 3\nsteps: 1\n")
    assert _adapt(workspace, tmp_path / "a0", "--config", str(config), "--seed", "0") == 0
    assert json.loads((tmp_path / "a0" / "liftpeft.json").read_text())["seed"] == 0
    assert _adapt(workspace, tmp_path / "a3", "--config", str(config)) == 0
    assert json.loads((tmp_path / "a3" / "liftpeft.json").read_text())["seed"] == 3
