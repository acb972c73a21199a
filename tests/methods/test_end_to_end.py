"""Every registered method builds through the registry and runs meta_train + adapt on a tiny problem."""

import math

import pytest
import torch

from liftpeft.methods import available_methods, build_method, scoring_objective
from liftpeft.methods.task_similarity import letter_count_embedder

LIFT_TINY = dict(k=2, sigma=1.0, beta=1.0, tau=1e-3, batch_size=8, adapt_steps=3, adapt_batch_size=8)
LIFT_STEPS = dict(steps=24, warmup_steps=8, burnin_steps=8, thin=2)

_META = dict(
    meta_steps=3, meta_batch_size=4, tasks_per_step=2, inner_lr=1e-2, adapt_steps=2, adapt_batch_size=4
)
_SGLD_ADAPT = dict(sigma=1.0, tau=1e-2, adapt_steps=2, adapt_step_size=1e-2, adapt_batch_size=4)

# Tiny settings per registered method (a method registered without an entry here fails the first test).
TINY = {
    "lift": {**LIFT_TINY, **LIFT_STEPS},
    "lift-multilora": {**LIFT_TINY, **LIFT_STEPS},
    "no-meta": dict(adapt_steps=3, adapt_batch_size=8),
    "union": dict(meta_steps=6, adapt_steps=3, adapt_batch_size=8),
    "zoo-lift": dict(k=2, sigma=1.0, beta=1.0, task_steps=4, adapt_steps=3, adapt_batch_size=8),
    "retriever-mixture": dict(top_k=2, task_steps=4, adapt_steps=3, embedder=letter_count_embedder),
    "retriever-fusion": dict(top_k="all", task_steps=4, adapt_steps=3, embedder=letter_count_embedder),
    "mbc": dict(n_clusters=2, task_steps=4, cluster_steps=4, adapt_steps=3),
    "protonet": dict(meta_steps=4, query_size=4, adapt_steps=2, adapt_batch_size=4),
    "protonet-lite": dict(meta_steps=4, query_size=4, adapt_steps=2, adapt_batch_size=4),
    "multilora": dict(meta_steps=4, adapt_steps=3),
    "maml": dict(_META, inner_steps=2),
    "fo-maml": dict(_META, inner_steps=2),
    "imaml": dict(_META, inner_steps=2, cg_steps=2),
    "reptile": dict(_META, inner_steps=2),
    "bootstrapped-maml": dict(_META, bootstrap_steps=2),
    "maml-mix": dict(_META, k=2, assignment_warmup_steps=1),
    "imaml-mix": dict(_META, k=2, assignment_warmup_steps=1, inner_steps=2, cg_steps=2),
    "bmaml": dict(_META, n_particles=2),
    "abml": dict(_META, n_samples=3),
    "shared-bayes": dict(
        _SGLD_ADAPT, meta_steps=4, warmup_steps=1, burnin_steps=1, thin=1, adapt_keep_last=2
    ),
    "taskwise-bayes": dict(_SGLD_ADAPT, adapt_keep_last=2),
    "lift-sample-approx": {**LIFT_TINY, **LIFT_STEPS},
    "merge-linear": dict(task_steps=4, adapt_batch_size=8),
    "merge-ties": dict(task_steps=4, adapt_weights="support", adapt_batch_size=8),
    "merge-dare-ties": dict(task_steps=4, adapt_steps=2, adapt_batch_size=8),
    "merge-svd": dict(task_steps=4, adapt_batch_size=8),
    "lorahub": dict(task_steps=4, adapt_evaluations=6, adapt_batch_size=8),
    "arrow": dict(task_steps=4, adapt_top_k=2),
}


def test_every_registered_method_has_tiny_settings():
    assert sorted(available_methods()) == sorted(TINY)


@pytest.mark.parametrize("name", sorted(TINY))
def test_method_meta_trains_and_adapts(name, tiny_problem):
    problem, held_out = tiny_problem
    method = build_method(name, **TINY[name])
    state = method.meta_train(problem, seed=0)
    task = held_out[0]
    samples = method.adapt(state, task, seed=0)
    assert samples.dim() == 2 and samples.shape[1] == problem.dim and torch.isfinite(samples).all()
    metrics = scoring_objective(method, task).evaluate(samples, "test")
    n = task.n_examples("test")
    assert metrics["n"] == n and math.isfinite(metrics["loss"]) and metrics["loss"] > 0
    assert metrics["accuracy"] * n == pytest.approx(round(metrics["accuracy"] * n))  # a count of hits


def test_zoo_lift_fits_the_structured_prior_from_the_zoo(tiny_problem):
    problem, held_out = tiny_problem
    method = build_method("zoo-lift", **{**TINY["zoo-lift"], "spread": "tensor", "tail_dof": 4.0})
    prior = method.meta_train(problem, seed=0)
    assert prior.structure is not None and prior.dof == 4.0 and prior.task_variance is not None
    assert prior.n_components == 2 and method.config.lift_config().clusters == 2
    samples = method.adapt(prior, held_out[0], seed=0)
    assert torch.isfinite(samples).all()
    with pytest.raises(ValueError, match="spread must be one of"):
        build_method("zoo-lift", spread="per-layer")


def test_gain_cap_reaches_the_samplers_of_the_bayesian_ablations(tiny_problem, monkeypatch):
    """shared-bayes caps its meta-training pSGLD and both ablations cap test-time pSGLD at the prior's
    stable gain (see lift's gain_cap); off by default."""
    from liftpeft.core.sgld import gain_cap
    from liftpeft.methods import shared_bayes, taskwise_bayes

    problem, held_out = tiny_problem
    seen = {"max_gain": [], "cap_gain": []}
    kernel, adapt = shared_bayes.langevin_kernel, taskwise_bayes.adapt

    def spy_kernel(preconditioner, **kw):
        seen["max_gain"].append(kw.get("max_gain"))
        return kernel(preconditioner, **kw)

    def spy_adapt(*args, **kw):
        seen["cap_gain"].append(kw.get("cap_gain"))
        return adapt(*args, **kw)

    monkeypatch.setattr(shared_bayes, "langevin_kernel", spy_kernel)
    monkeypatch.setattr(taskwise_bayes, "adapt", spy_adapt)
    for cap in (False, True):
        method = build_method("shared-bayes", **{**TINY["shared-bayes"], "gain_cap": cap})
        method.adapt(method.meta_train(problem, seed=0), held_out[0], seed=0)
    sigma, step = TINY["shared-bayes"]["sigma"], method.config.step_size
    assert seen["max_gain"] == [None, pytest.approx(gain_cap(step, 1.0 / sigma**2))]
    assert seen["cap_gain"] == [False, True]
