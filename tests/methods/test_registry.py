"""Every baseline of issue 5: registered, configurable with validated help-carrying settings."""

import dataclasses

import pytest

from liftpeft.methods import available_methods, build_method

# name -> a setting that must be refused, and a word the message must contain (issue-5 baselines;
# every method's end-to-end run lives in test_end_to_end.py)
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
NEW_METHODS = sorted(BAD)


def test_every_new_method_is_registered_with_a_description():
    registry = available_methods()
    assert set(NEW_METHODS) <= set(registry)
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


def test_every_method_names_its_family_for_reports():
    from liftpeft.methods.base import available_methods

    families = {name: info.family for name, info in available_methods().items()}
    assert "other" not in families.values(), families
    assert families["lift"] == "LiFT" and families["shared-bayes"] == "LiFT ablation"
    assert families["maml"] == families["reptile"] == "meta-learning"
