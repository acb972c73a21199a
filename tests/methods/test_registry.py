"""Every baseline of issue 5: registered, configurable with validated help-carrying settings, and run
end to end (meta-train, adapt, evaluate) on a tiny BERT cross-encoder -- second order included."""

import dataclasses

import pytest
import torch

from liftpeft.methods import MetaProblem, available_methods, build_method
from liftpeft.peft_integration import PeftBackbone, PeftTaskObjective
from liftpeft.tasks import read_task_collection

_META = dict(
    meta_steps=3, meta_batch_size=4, tasks_per_step=2, inner_lr=1e-2, adapt_steps=2, adapt_batch_size=4
)
_SGLD_ADAPT = dict(sigma=1.0, tau=1e-2, adapt_steps=2, adapt_step_size=1e-2, adapt_batch_size=4)

# name -> (tiny settings, number of samples adapt returns)
TINY = {
    "maml": (dict(_META, inner_steps=2), 1),
    "fo-maml": (dict(_META, inner_steps=2), 1),
    "imaml": (dict(_META, inner_steps=2, cg_steps=2), 1),
    "reptile": (dict(_META, inner_steps=2), 1),
    "bootstrapped-maml": (dict(_META, bootstrap_steps=2), 1),
    "maml-mix": (dict(_META, k=2, assignment_warmup_steps=1), 1),
    "imaml-mix": (dict(_META, k=2, assignment_warmup_steps=1, inner_steps=2, cg_steps=2), 1),
    "bmaml": (dict(_META, n_particles=2), 2),
    "abml": (dict(_META, n_samples=3), 3),
    "shared-bayes": (dict(_SGLD_ADAPT, meta_steps=4, warmup_steps=1, burnin_steps=1, thin=1, adapt_keep_last=2), 2),
    "taskwise-bayes": (dict(_SGLD_ADAPT, adapt_keep_last=2), 2),
    "lift-sample-approx": (
        dict(k=1, sigma=1.0, beta=1.0, tau=1e-2, steps=6, warmup_steps=2, burnin_steps=2, thin=1, batch_size=4,
             adapt_steps=2, adapt_batch_size=4),
        1,
    ),
}  # fmt: skip
NEW_METHODS = sorted(TINY)

# name -> a setting that must be refused, and a word the message must contain
BAD = {
    "maml": ({"inner_steps": 0}, "inner_steps"),
    "fo-maml": ({"meta_optimizer": "rmsprop"}, "meta_optimizer"),
    "imaml": ({"lam": 0.0}, "lam"),
    "reptile": ({"meta_lr": 0.0}, "meta_lr"),
    "bootstrapped-maml": ({"bootstrap_steps": 0}, "bootstrap_steps"),
    "maml-mix": ({"k": 0}, "k"),
    "imaml-mix": ({"assignment_warmup_steps": -1}, "assignment_warmup_steps"),
    "bmaml": ({"meta_loss": "elbo"}, "meta_loss"),
    "abml": ({"prior_init_std": 0.0}, "prior_init_std"),
    "shared-bayes": ({"meta_steps": 10, "warmup_steps": 5, "burnin_steps": 5}, "meta_steps"),
    "taskwise-bayes": ({"sigma": -1.0}, "sigma"),
    "lift-sample-approx": ({"phi_update": "mean"}, "phi_update"),
}


def test_every_new_method_is_registered_with_a_description():
    registry = available_methods()
    assert set(NEW_METHODS) <= set(registry)
    assert set(BAD) == set(NEW_METHODS)
    for name in NEW_METHODS:
        assert registry[name].description and registry[name].config_class is not None


@pytest.mark.parametrize("name", NEW_METHODS)
def test_builds_with_defaults_and_every_setting_has_help(name):
    method = build_method(name)
    assert method.name == name
    for f in dataclasses.fields(method.config):
        assert f.metadata.get("help"), f"{name}: setting {f.name!r} has no help text"


def test_lift_sample_approx_is_lift_with_the_sample_phi_update():
    assert build_method("lift-sample-approx").config.phi_update == "sample"
    assert build_method("lift").config.phi_update != "sample"


@pytest.mark.parametrize("name", NEW_METHODS)
def test_bad_settings_are_refused_with_a_message_naming_them(name):
    overrides, word = BAD[name]
    with pytest.raises(ValueError, match=word):
        build_method(name, **overrides)


@pytest.fixture(scope="module")
def tiny_problem(tiny_models, rule_tasks):
    backbone = PeftBackbone(tiny_models["bert"])
    train = [PeftTaskObjective(backbone, t) for t in read_task_collection(rule_tasks / "train")[:4]]
    test = PeftTaskObjective(backbone, read_task_collection(rule_tasks / "test")[0])
    return MetaProblem(train, backbone.theta0, description=backbone.describe()), test


@pytest.mark.parametrize("name", NEW_METHODS)
def test_meta_train_and_adapt_end_to_end_on_a_tiny_bert(name, tiny_problem):
    problem, task = tiny_problem
    settings, n_samples = TINY[name]
    method = build_method(name, **settings)
    state = method.meta_train(problem, seed=0)
    samples = method.adapt(state, task, seed=0)
    assert samples.shape == (n_samples, problem.dim)
    assert torch.isfinite(samples).all()
    metrics = task.evaluate(samples)
    assert 0.0 <= metrics["accuracy"] <= 1.0
