"""LiFT meta-training: warm-up, burn-in and sampling with SGLD-Gibbs, and the online mixture over phi.

Per step: pick ``tasks_per_step`` training tasks uniformly at random, draw a minibatch of each, and
update their adapters with ``d/dtheta log p(D_i|theta_i) = -(n_i/tau) dL_i/dtheta`` and then ``phi``.
Warm-up steps optimise the joint posterior without noise (``HierarchicalWarmup``: Adam in the
non-centred coordinates ``theta_i = phi + delta_i``, see its docstring for why); burn-in steps run
``SGLDGibbs`` from there without keeping samples; afterwards every ``thin``-th ``phi`` goes into the
online mixture.

All randomness comes from two explicit generators (the sampler's noise, and task / minibatch
choice), whose states are checkpointed, so a resumed run reproduces an uninterrupted one exactly.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from liftpeft.core.gibbs import NonFiniteError, SGLDGibbs
from liftpeft.core.mixture import OnlineGaussianMixture
from liftpeft.core.prior import HierarchicalPrior
from liftpeft.core.structured import StructuredGibbs
from liftpeft.core.warmup import ClusteredWarmup, HierarchicalWarmup
from liftpeft.learned_prior import LearnedPrior
from liftpeft.methods.base import MetaProblem
from liftpeft.methods.checkpoint import load_checkpoint, save_checkpoint
from liftpeft.methods.lift.config import LIFT_TEST_TIME, LiftConfig
from liftpeft.methods.lift.structured import build_sampler as build_structured_sampler
from liftpeft.methods.lift.structured import structured_prior
from liftpeft.objective import loss_and_grad, sample_batch
from liftpeft.progress import progress_bar

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
TRACE_DIRECTIONS = 3
METRICS_FILE = "metrics.jsonl"
SEEDING_EXAMPLES = 64  # examples per task that seed the task clusters and score the cluster moves


# settings that do not change the chain: a checkpoint resumes a run that differs only in these
_NOT_IN_CHAIN = (*LIFT_TEST_TIME, "checkpoint_every", "log_every")


def _same_run(fingerprint: dict[str, Any]) -> dict[str, Any]:
    config = {k: v for k, v in fingerprint["config"].items() if k not in _NOT_IN_CHAIN}
    return {**fingerprint, "config": config}


def mixture_prior(
    mixture: OnlineGaussianMixture,
    problem: MetaProblem,
    config: LiftConfig,
    k: int,
    seed: int,
    trace: dict[str, list[float]],
) -> LearnedPrior:
    """The paper's learned prior: the ``k``-component mixture fitted to the chain's phi samples."""
    if not mixture.is_fitted:
        mixture.initialize()
    cfg = {**config.to_dict(), "k": k, "extra_k": [], "seed": seed}
    return LearnedPrior.from_mixture(
        mixture,
        problem.theta0,
        beta=config.beta,
        sigma=config.sigma,
        backbone=problem.description,
        config=cfg,
        task_names=[t.name for t in problem.train],
        trace=trace,
    )


class MetaTrainingError(RuntimeError):
    """Meta-training stopped; the message names the task and step and where the last checkpoint is."""


class LiftTrainer:
    """Runs LiFT meta-training on a ``MetaProblem``; optional checkpoints and a metrics log in ``workdir``."""

    def __init__(
        self,
        problem: MetaProblem,
        config: LiftConfig,
        seed: int = 0,
        workdir: str | os.PathLike | None = None,
        on_log: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.problem = problem
        self.config = config
        self.seed = int(seed)
        self.workdir = Path(workdir) if workdir is not None else None
        self.on_log = on_log
        n, d = len(problem.train), problem.dim
        prior = HierarchicalPrior(config.sigma, config.beta, center=problem.theta0.float())
        self.sampler: SGLDGibbs | StructuredGibbs
        if config.structured:
            self.sampler = build_structured_sampler(problem, config, self.seed)
        else:
            self.sampler = SGLDGibbs(
                prior,
                n,
                d,
                config.step_size,
                phi_update=config.phi_update,
                temperature=config.temperature,
                seed=self.seed,
                phi_step_size=config.phi_step_size,
                preconditioner=config.preconditioner,
                init=problem.theta0.float(),
                rmsprop_max_gain=config.theta_max_gain,
            )
        self.warmup: HierarchicalWarmup | ClusteredWarmup
        if config.structured and config.clusters > 1:
            self.warmup = ClusteredWarmup(
                prior,
                n,
                d,
                config.warmup_lr,
                config.clusters,
                generator=torch.Generator().manual_seed(self.seed + 3),
                init=problem.theta0.float(),
                assign_after=config.cluster_seed_step,
                init_partition=config.partition,
                reassign=config.reassigns_in_warmup,
            )
        else:
            self.warmup = HierarchicalWarmup(prior, n, d, config.warmup_lr, init=problem.theta0.float())
        # the paper's online mixture over phi samples (the structured prior summarises its own chain)
        self.mixtures = {
            k: OnlineGaussianMixture(k, random_state=self.seed, buffer_size=self._buffer_size(k))
            for k in ([] if config.structured else [config.k, *config.extra_k])
        }
        self.mixture = self.mixtures.get(config.k)
        self.data_generator = torch.Generator().manual_seed(self.seed + 1)
        # Sampler diagnostics: summary statistics of every kept phi sample -- its distance from the
        # PEFT initialisation and its projections on a few fixed random directions.
        directions = torch.randn(TRACE_DIRECTIONS, d, generator=torch.Generator().manual_seed(self.seed + 2))
        self._trace_directions = directions / directions.norm(dim=1, keepdim=True)
        self.trace: dict[str, list[float]] = {name: [] for name in self._trace_names()}
        self.step = 0
        self._sizes = [task.n_examples("train") for task in problem.train]
        self._last_loss = math.nan

    def _buffer_size(self, k: int) -> int:
        wanted = self.config.mixture_buffer or max(20, 10 * k)
        return max(k, min(wanted, self.config.n_samples))

    # -- identity of a run (a checkpoint only resumes the same run) --------------------------------
    def _fingerprint(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "seed": self.seed,
            "n_tasks": len(self.problem.train),
            "dim": self.problem.dim,
            "task_names": [t.name for t in self.problem.train],
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "run": self._fingerprint(),
            "step": self.step,
            "sampler": self.sampler.state_dict(),
            "warmup": self.warmup.state_dict(),
            "mixtures": {str(k): m.state_dict() for k, m in self.mixtures.items()},
            "data_generator": self.data_generator.get_state(),
            "trace": self.trace,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if _same_run(state["run"]) != _same_run(json.loads(json.dumps(self._fingerprint()))):
            raise MetaTrainingError(
                "the checkpoint was written by a run with other settings, tasks or seed; "
                "resume with exactly the same arguments, or start a new run in another output directory"
            )
        self.step = int(state["step"])
        self.sampler.load_state_dict(state["sampler"])
        self.warmup.load_state_dict(state["warmup"])
        for k, mixture in self.mixtures.items():
            mixture.load_state_dict(state["mixtures"][str(k)])
        self.data_generator.set_state(state["data_generator"])
        self.trace = {name: [float(v) for v in values] for name, values in state["trace"].items()}

    # -- the loop ----------------------------------------------------------------------------------
    def phase(self, step: int) -> str:
        return self.config.schedule.phase(step)

    def _grad_fn(self, tasks: list[int]) -> Callable[[torch.Tensor], torch.Tensor]:
        cfg = self.config

        def grad_fn(theta: torch.Tensor) -> torch.Tensor:
            rows = theta[None] if theta.dim() == 1 else theta
            grads, losses = [], []
            for row, i in zip(rows, tasks):
                task = self.problem.train[i]
                idx = sample_batch(self._sizes[i], cfg.batch_size, self.data_generator)
                loss, grad = loss_and_grad(task, row, idx)
                if not math.isfinite(loss) or not torch.isfinite(grad).all():
                    raise NonFiniteError(f"non-finite loss on task {task.name!r}")
                losses.append(loss)
                grads.append(-(self._sizes[i] / cfg.tau) * grad)
            self._last_loss = sum(losses) / len(losses)
            out = torch.stack(grads)
            return out[0] if theta.dim() == 1 else out

        return grad_fn

    def _task_gradients(self, theta: torch.Tensor) -> torch.Tensor:
        """Every training task's loss gradient at its own row of ``theta`` (N, d), on (up to) its first
        ``SEEDING_EXAMPLES`` training examples."""
        grads = []
        for i, task in enumerate(self.problem.train):
            _, grad = loss_and_grad(
                task, theta[i].clone(), torch.arange(min(self._sizes[i], SEEDING_EXAMPLES))
            )
            grads.append(-grad)
        return torch.stack(grads)

    @torch.no_grad()
    def _losses(self, i: int, rows: torch.Tensor) -> torch.Tensor:
        """Task ``i``'s mean loss at each row ``(n, d)``, on one fresh minibatch shared by the rows."""
        task = self.problem.train[i]
        idx = sample_batch(self._sizes[i], self.config.batch_size, self.data_generator)
        return torch.tensor([float(task.loss(row, idx)) for row in rows], dtype=torch.float64)

    @torch.no_grad()
    def _log_lik(self, i: int, rows: torch.Tensor) -> torch.Tensor:
        """``log p(D_i | theta) = -(n_i / tau) L_i(theta)`` for each row, on the task's first (up to)
        ``SEEDING_EXAMPLES`` examples: a fixed subset, so that the cluster moves' Metropolis-Hastings
        ratio compares like with like (a fresh small minibatch per move makes it mostly noise)."""
        task = self.problem.train[i]
        probe = torch.arange(min(self._sizes[i], SEEDING_EXAMPLES))
        losses = torch.tensor([float(task.loss(row, probe)) for row in rows], dtype=torch.float64)
        return -(self._sizes[i] / self.config.tau) * losses

    def _pick_tasks(self) -> list[int]:
        n = len(self.problem.train)
        k = min(self.config.tasks_per_step, n)
        return torch.randperm(n, generator=self.data_generator)[:k].tolist()

    def run(self, resume: bool = False) -> LearnedPrior:
        """Meta-train (continuing from ``workdir``'s checkpoint if ``resume``) and return the prior."""
        if resume:
            self._resume()
        elif self.workdir is not None:
            (self.workdir / METRICS_FILE).unlink(missing_ok=True)
        cfg = self.config
        schedule = cfg.schedule
        bar = progress_bar(total=cfg.steps, desc="LiFT meta-training", initial=self.step, unit="step")
        loss_ema = math.nan
        try:
            while self.step < cfg.steps:
                phase = self.phase(self.step)
                tasks = self._pick_tasks()
                index: int | torch.Tensor = tasks[0] if len(tasks) == 1 else torch.tensor(tasks)
                try:
                    if phase == "warmup" and isinstance(self.warmup, ClusteredWarmup):
                        if self.warmup.needs_seeding:
                            grads = (
                                self._task_gradients(self.warmup.theta)
                                if self.warmup.needs_gradients
                                else None
                            )
                            self.warmup.seed_clusters(grads)
                        self.warmup.step(index, self._grad_fn(tasks), loss_fn=self._losses)
                    elif phase == "warmup":
                        self.warmup.step(index, self._grad_fn(tasks))
                    else:
                        if self.step == cfg.warmup_steps:
                            self._start_chain()
                        if isinstance(self.sampler, StructuredGibbs) and cfg.clusters > 1:
                            self.sampler.step(index, self._grad_fn(tasks), log_lik_fn=self._log_lik)
                        else:
                            self.sampler.step(index, self._grad_fn(tasks))
                except NonFiniteError as err:
                    raise MetaTrainingError(self._failure_message(err)) from None
                if schedule.keeps(self.step):
                    if isinstance(self.sampler, StructuredGibbs):
                        self.sampler.record()
                    for mixture in self.mixtures.values():
                        mixture.partial_fit(self.sampler.phi)
                    self._record_trace()
                loss_ema = (
                    self._last_loss if math.isnan(loss_ema) else 0.95 * loss_ema + 0.05 * self._last_loss
                )
                self.step += 1
                bar.update(1)
                bar.set_postfix(phase=phase, loss=f"{loss_ema:.3f}", refresh=False)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    self._log(phase, loss_ema)
                if self.workdir is not None and (self.step % cfg.checkpoint_every == 0):
                    save_checkpoint(self.workdir / CHECKPOINT_DIR, self.state_dict())
        finally:
            bar.close()
        if isinstance(self.sampler, StructuredGibbs):
            return structured_prior(self.sampler, self.problem, cfg, self.seed, self.trace)
        priors = {k: self._prior(k) for k in self.mixtures}
        main = priors.pop(cfg.k)
        main.siblings = priors
        return main

    def _start_chain(self) -> None:
        """Hand the warm-up's adapters to the sampler (the structured one also seeds its clusters)."""
        if isinstance(self.sampler, StructuredGibbs):
            clusters = self.warmup.z if isinstance(self.warmup, ClusteredWarmup) else None
            self.sampler.initialize(self.warmup.theta, assignments=clusters)
        elif self.config.warmup_steps > 0:
            self.sampler.set_state(phi=self.warmup.phi, theta=self.warmup.theta)

    @staticmethod
    def _phi(state: Any) -> torch.Tensor:
        return state.phi_mean if isinstance(state, StructuredGibbs) else state.phi

    def _trace_names(self) -> list[str]:
        return ["phi_distance", *(f"phi_projection_{i}" for i in range(TRACE_DIRECTIONS))]

    def _record_trace(self) -> None:
        offset = self._phi(self.sampler) - self.problem.theta0
        values = [float(offset.norm()), *(float(v) for v in self._trace_directions @ offset)]
        for name, value in zip(self._trace_names(), values):
            self.trace[name].append(value)

    def _prior(self, k: int) -> LearnedPrior:
        """The learned prior with ``k`` components (``config.k`` or one of ``extra_k``)."""
        return mixture_prior(self.mixtures[k], self.problem, self.config, k, self.seed, self.trace)

    def _resume(self) -> None:
        if self.workdir is None:
            raise MetaTrainingError("resume needs a working directory holding a checkpoint")
        folder = self.workdir / CHECKPOINT_DIR
        if not folder.is_dir():
            logger.info("no checkpoint in %s: starting from step 0", folder)
            (self.workdir / METRICS_FILE).unlink(missing_ok=True)
            return
        self.load_state_dict(load_checkpoint(folder))
        self._truncate_metrics()
        logger.info("resumed from step %d", self.step)

    def _truncate_metrics(self) -> None:
        """Drop metrics lines written after the checkpoint (they will be written again)."""
        path = self.workdir / METRICS_FILE  # type: ignore[operator]
        if path.is_file():
            keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= self.step]
            path.write_text("".join(ln + "\n" for ln in keep))

    def _failure_message(self, err: Exception) -> str:
        where = "no checkpoint was written"
        if self.workdir is not None and (self.workdir / CHECKPOINT_DIR).is_dir():
            saved = load_checkpoint(self.workdir / CHECKPOINT_DIR)["step"]
            where = f"the last good checkpoint (step {saved}) is kept in {self.workdir / CHECKPOINT_DIR}"
        return (
            f"meta-training stopped at step {self.step}: {err}; {where}. Lower step_size or raise tau, "
            "then resume"
        )

    def _log(self, phase: str, loss: float) -> None:
        state = self.warmup if phase == "warmup" else self.sampler
        record: dict[str, Any] = {
            "step": self.step,
            "phase": phase,
            "loss": loss,
            "step_size": self.config.step_size,
            "phi_distance": float((self._phi(state) - self.problem.theta0).norm()),
            "theta_spread": float((state.theta - self._phi(state)).norm(dim=1).mean()),
        }
        if isinstance(state, StructuredGibbs):
            record["beta_mean"] = float(state.beta2.mean().sqrt())
            record["cluster_sizes"] = [int(c) for c in state.counts]
        if self.mixture is not None and self.mixture.is_fitted:
            record["mixture_weights"] = [round(float(w), 4) for w in self.mixture.weights_]
        if self.on_log is not None:
            self.on_log(record)
        if self.workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            with (self.workdir / METRICS_FILE).open("a") as handle:
                handle.write(json.dumps(record) + "\n")
