"""LiFT's structured prior on a ``MetaProblem``: build its sampler, and turn its posterior into a prior.

The model and the sampler are ``liftpeft.core.structured``; this module only connects them to the
problem (the adapter's tensors give the spread's blocks) and to the saved ``LearnedPrior``.
"""

from __future__ import annotations

from typing import Any

from liftpeft.core.structured import StructuredGibbs, StructuredHierarchy
from liftpeft.learned_prior import LearnedPrior, adapter_blocks, structure_record
from liftpeft.methods.base import MetaProblem
from liftpeft.methods.lift.config import LiftConfig


def build_model(problem: MetaProblem, config: LiftConfig) -> StructuredHierarchy:
    """The structured hierarchy of ``config`` over ``problem``'s adapter (the spread's blocks)."""
    blocks, _ = adapter_blocks(config.spread, problem.description, problem.dim)
    return StructuredHierarchy(
        config.sigma,
        config.beta,
        problem.theta0.float(),
        blocks,
        learn_spread=config.spread != "fixed",
        clusters=config.clusters,
        alpha=config.cluster_alpha,
        dof=config.tail_dof,
        spread_a0=config.spread_a0,
    )


def build_sampler(problem: MetaProblem, config: LiftConfig, seed: int) -> StructuredGibbs:
    return StructuredGibbs(
        build_model(problem, config),
        len(problem.train),
        config.step_size,
        temperature=config.temperature,
        seed=seed,
        preconditioner=config.preconditioner,
        rmsprop_max_gain=config.theta_max_gain,
    )


def structured_prior(
    sampler: Any,
    problem: MetaProblem,
    config: LiftConfig,
    seed: int,
    trace: dict[str, list[float]],
) -> LearnedPrior:
    """The learned prior: the clusters' centres and weights, the learned spread, the tails.

    ``sampler``: a ``StructuredGibbs``, or a sharded one (``scale.ShardedGibbs``: every rank calls this,
    since its summary gathers the per-task terms from all ranks)."""
    post = sampler.summary()
    task_names = [t.name for t in problem.train]
    _, block_names = adapter_blocks(config.spread, problem.description, problem.dim)
    structure = structure_record(
        spread_mode=config.spread,
        prior_beta=config.beta,
        block_names=block_names,
        spread=post["spread"],
        clusters=config.clusters,
        tail_dof=config.tail_dof,
        weights=post["weights"],
        assignments=post["assignments"],
        task_names=task_names,
        task_scale=post["task_scale"],
    )
    cfg = {**config.to_dict(), "seed": seed}
    return LearnedPrior(
        weights=post["weights"],
        means=post["means"],
        covariances=post["covariances"],
        # expected cluster sizes plus the Dirichlet's pseudo-counts: never zero, proportional to weights
        counts=post["weights"] * (len(task_names) + config.clusters * config.cluster_alpha),
        center=problem.theta0.detach().float().clone(),
        beta=float(post["spread"].mean().sqrt()) if config.spread != "fixed" else config.beta,
        sigma=config.sigma,
        task_variance=post["task_variance"] if config.spread != "fixed" else None,
        dof=config.tail_dof,
        structure=structure,
        backbone=problem.description,
        config=cfg,
        task_names=task_names,
        trace=trace,
    )
