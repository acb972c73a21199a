"""LiFT's structured prior on a ``MetaProblem``: build its sampler, and turn its posterior into a prior.

The model and the sampler are ``liftpeft.core.structured``; this module only connects them to the
problem (the adapter's tensors give the spread's blocks) and to the saved ``LearnedPrior``.
"""

from __future__ import annotations

from typing import Any

import torch

from liftpeft.core.structured import StructuredGibbs, StructuredHierarchy, spread_blocks
from liftpeft.learned_prior import LearnedPrior
from liftpeft.methods.base import MetaProblem
from liftpeft.methods.lift.config import LiftConfig

MAX_LISTED_BLOCKS = 256  # a prior lists its spread per block up to this many blocks, quantiles beyond


def adapter_tensors(problem: MetaProblem) -> tuple[list[str], list[int]]:
    """Names and sizes of the adapter's tensors, from the backbone description (empty if unknown)."""
    spec = problem.description.get("spec") or {}
    names, shapes = list(spec.get("names", [])), spec.get("shapes", [])
    numels = [int(torch.Size(shape).numel()) for shape in shapes]
    return names, numels


def build_sampler(problem: MetaProblem, config: LiftConfig, seed: int) -> StructuredGibbs:
    names, numels = adapter_tensors(problem)
    blocks, _ = spread_blocks(config.spread, problem.dim, names, numels)
    model = StructuredHierarchy(
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
    return StructuredGibbs(
        model,
        len(problem.train),
        config.step_size,
        temperature=config.temperature,
        seed=seed,
        preconditioner=config.preconditioner,
    )


def _spread_summary(config: LiftConfig, problem: MetaProblem, spread: torch.Tensor) -> dict[str, Any]:
    beta = spread.double().sqrt()
    names, numels = adapter_tensors(problem)
    _, block_names = spread_blocks(config.spread, problem.dim, names, numels)
    out: dict[str, Any] = {"mode": config.spread, "prior_beta": config.beta, "n_blocks": len(block_names)}
    if len(block_names) <= MAX_LISTED_BLOCKS:
        out["beta"] = {name: round(float(b), 6) for name, b in zip(block_names, beta)}
    qs = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)
    out["beta_quantiles"] = {f"q{int(q * 100)}": round(float(v), 6) for q, v in zip(qs, beta.quantile(qs))}
    return out


def structured_prior(
    sampler: StructuredGibbs,
    problem: MetaProblem,
    config: LiftConfig,
    seed: int,
    trace: dict[str, list[float]],
) -> LearnedPrior:
    """The learned prior: the clusters' centres and weights, the learned spread, the tails."""
    post = sampler.summary()
    task_names = [t.name for t in problem.train]
    structure = {
        "spread": _spread_summary(config, problem, post["spread"]),
        "clusters": config.clusters,
        "tail_dof": config.tail_dof,
        "cluster_weights": [round(float(w), 4) for w in post["weights"]],
        "assignments": {
            name: [round(float(p), 3) for p in row] for name, row in zip(task_names, post["assignments"])
        },
    }
    if config.tail_dof is not None:
        structure["task_scale"] = {
            name: round(float(v), 4) for name, v in zip(task_names, post["task_scale"])
        }
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
