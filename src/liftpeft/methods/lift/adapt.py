"""Test-time adaptation of LiFT: SGLD (or MAP) on a new task under the learned mixture prior."""

from __future__ import annotations

import logging

import torch

from liftpeft.core.mixture_prior import AdaptResult, adapt
from liftpeft.learned_prior import LearnedPrior
from liftpeft.methods.lift.config import LiftConfig
from liftpeft.objective import TaskObjective, loss_and_grad, sample_batch
from liftpeft.progress import progress_bar

logger = logging.getLogger(__name__)

_SELECTION_EXAMPLES = 64  # train examples used to pick the starting component


def adapt_to_task(prior: LearnedPrior, task: TaskObjective, config: LiftConfig, seed: int = 0) -> AdaptResult:
    """Adapt to ``task`` under the learned prior; returns the kept samples.

    With a mixture prior, ``adapt_start="best"`` starts from the component mean with the lowest train
    loss (the paper); ``"all"`` adapts from every component mean and keeps the run whose kept samples
    have the lowest train loss (with few examples the loss at the means can pick the wrong cluster,
    the loss after adapting rarely does)."""
    n = task.n_examples("train")
    batch_size = config.adapt_batch_size or config.batch_size
    generator = torch.Generator().manual_seed(seed + 7919)
    scale = n / config.tau

    def grad_log_lik(theta: torch.Tensor) -> torch.Tensor:
        _, grad = loss_and_grad(task, theta, sample_batch(n, batch_size, generator))
        return -scale * grad

    probe = torch.arange(min(n, _SELECTION_EXAMPLES))

    @torch.no_grad()
    def selection_loss(theta: torch.Tensor) -> float:
        return float(task.loss(theta.float(), probe))

    mixture_prior = prior.mixture_prior(config.adapt_beta_scale)
    starts: list[int | None] = [None]  # None: adapt()'s own choice, the lowest loss at the means
    if config.adapt_start == "all" and prior.n_components > 1:
        starts = list(range(prior.n_components))
    bar = progress_bar(total=config.adapt_steps * len(starts), desc=f"adapting {task.name}", unit="step")
    runs: list[tuple[float, AdaptResult]] = []
    try:
        for component in starts:
            run = adapt(
                mixture_prior,
                grad_log_lik,
                steps=config.adapt_steps,
                step_size=config.adapt_step_size or config.step_size,
                method=config.adapt_method,
                keep_last=config.adapt_keep_last,
                temperature=config.adapt_temperature,
                component=component,
                loss_fn=selection_loss if prior.n_components > 1 else None,
                seed=seed,
                preconditioner=config.preconditioner,
                cap_gain=config.gain_cap,
                callback=lambda step, theta: bar.update(1),
            )
            after = sum(selection_loss(s) for s in run.samples) / len(run.samples) if len(starts) > 1 else 0.0
            runs.append((after, run))
    finally:
        bar.close()
    result = min(runs, key=lambda pair: pair[0])[1]
    responsibilities = mixture_prior.responsibilities(result.theta.double())
    result.report = {
        "init_component": result.init_component,
        "responsibilities": [round(float(r), 4) for r in responsibilities],
    }
    if len(runs) > 1:
        result.report["loss_after_adapting_from"] = [round(loss, 5) for loss, _ in runs]
    if prior.n_components > 1:
        logger.info(
            "adapted %s from component %d; responsibilities %s",
            task.name,
            result.init_component,
            result.report["responsibilities"],
        )
    return result
