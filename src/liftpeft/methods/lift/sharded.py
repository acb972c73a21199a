"""LiFT meta-training data-parallel over tasks (``torchrun``), or with a task bank on disk.

Each rank owns the tasks ``i % W == rank`` and their adapters (``scale.ShardedGibbs``), visits
``tasks_per_step`` of its own tasks per step (so a step of W ranks visits W times as many tasks as one
process), and the ranks all-reduce the shared latent's statistics every step: no staleness.
The warm-up is the one-process run's (Adam in non-centred coordinates, hard EM of the clusters by
likelihood), data-parallel (``scale.warmup``). Progress, metrics and the artefact come from
rank 0; every rank takes part in the collective steps, the final summary included.

Checkpoints (in ``workdir/shards/rank-R/``), two phases: every rank saves ``ckpt-STEP`` (its shared
state, its shard's local state and the bank rows changed since the last checkpoint) atomically; after a
barrier each rank writes those rows into its bank files and drops all but its last two checkpoints.
A rank killed anywhere loses nothing saved: on ``--resume`` the ranks agree on the newest step that
every one of them saved (an all-reduce of the minimum), replay it (idempotent) and go on. The bank
files never hold rows of a step some rank did not save, because rows are written only after the
barrier that follows every rank's save.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from liftpeft.core.mixture import OnlineGaussianMixture
from liftpeft.core.prior import HierarchicalPrior
from liftpeft.learned_prior import LearnedPrior
from liftpeft.methods.base import MetaProblem
from liftpeft.methods.checkpoint import load_checkpoint, save_checkpoint
from liftpeft.methods.lift.config import LiftConfig
from liftpeft.methods.lift.structured import build_model, structured_prior
from liftpeft.methods.lift.trainer import (
    METRICS_FILE,
    SEEDING_EXAMPLES,
    MetaTrainingError,
    mixture_prior,
)
from liftpeft.objective import loss_and_grad, sample_batch
from liftpeft.progress import progress_bar
from liftpeft.scale import keys
from liftpeft.scale.comm import Communicator, LocalCommunicator
from liftpeft.scale.latent import PaperLatent
from liftpeft.scale.sampler import ShardedGibbs, random_schedule
from liftpeft.scale.structured_latent import StructuredLatent
from liftpeft.scale.warmup import WARMUP_FIELDS, ShardedWarmup

logger = logging.getLogger(__name__)

SHARDS_DIR = "shards"
_CKPT = "ckpt-"
# settings that do not change the chain (a checkpoint resumes a run that differs only in these)
_NOT_IN_CHAIN = ("checkpoint_every", "log_every")


def checkpoint_steps(folder: Path) -> list[int]:
    """Steps of the complete checkpoints in a rank's folder, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(
        int(p.name[len(_CKPT) :])
        for p in folder.iterdir()
        if p.name.startswith(_CKPT) and p.name[len(_CKPT) :].isdigit() and (p / "state.json").is_file()
    )


def _buffer_size(config: LiftConfig, k: int) -> int:
    return max(k, min(config.mixture_buffer or max(20, 10 * k), config.n_samples))


class _NoBar:
    """The progress bar of ranks other than 0."""

    def update(self, n: int = 1) -> None:
        return None

    def close(self) -> None:
        return None


class ShardedLiftTrainer:
    """Runs LiFT meta-training on ``problem`` as rank ``comm.rank`` of ``comm.world_size``."""

    def __init__(
        self,
        problem: MetaProblem,
        config: LiftConfig,
        seed: int = 0,
        workdir: str | os.PathLike | None = None,
        comm: Communicator | None = None,
        on_log: Callable[[dict[str, Any]], None] | None = None,
        schedule: Callable[[int], list[int]] | None = None,
    ) -> None:
        """``schedule(step)``: the tasks every rank's step visits (default: ``tasks_per_step`` of each
        rank's own tasks at random); one process given the schedule of W ranks takes their chain."""
        self.problem, self.config, self.seed = problem, config, int(seed)
        self.schedule = schedule
        self.comm = comm or LocalCommunicator()
        self.workdir = Path(workdir) if workdir is not None else None
        self.on_log = on_log if self.comm.rank == 0 else None
        if config.task_bank == "file" and self.workdir is None:
            raise MetaTrainingError("task_bank='file' needs an output directory for the bank files")
        if config.clusters > 1 and (
            config.cluster_init not in (None, "random") or config.warmup_reassign is False
        ):
            raise MetaTrainingError(
                f"a sharded run starts its clusters from a random partition and reassigns them in the "
                f"warm-up; leave cluster_init unset or random (not {config.cluster_init!r}) and "
                "warmup_reassign unset, or run in one process"
            )
        if config.gain_cap:
            raise MetaTrainingError(
                "gain_cap is not implemented in a sharded run; unset it or run in one process"
            )
        n, d = len(problem.train), problem.dim
        self.comm.same_everywhere("tasks and settings", self._fingerprint())
        if n < self.comm.world_size:
            raise MetaTrainingError(f"{n} training tasks cannot be shared by {self.comm.world_size} ranks")
        center = problem.theta0.float()
        if config.structured:
            self.latent: PaperLatent | StructuredLatent = StructuredLatent(
                build_model(problem, config), n, seed
            )
            curvature = None
        else:
            prior = HierarchicalPrior(config.sigma, config.beta, center=center)
            self.latent = PaperLatent(
                prior,
                n,
                d,
                seed,
                phi_update=config.phi_update,
                phi_step_size=config.phi_step_size or config.step_size,
                preconditioner=config.preconditioner,
            )
            curvature = prior.theta_curvature
        self._curvature = curvature
        self.sampler: ShardedGibbs | None = None
        self.resumed_from: int | None = None  # the step a resumed run continued from
        self.mixtures = {
            k: OnlineGaussianMixture(k, random_state=seed, buffer_size=_buffer_size(config, k))
            for k in ([] if config.structured else [config.k, *config.extra_k])
        }
        self.trace: dict[str, list[float]] = {"phi_distance": []}
        self._sizes = [task.n_examples("train") for task in problem.train]
        self._losses: list[float] = []

    def _build_sampler(self) -> ShardedGibbs:
        cfg, problem = self.config, self.problem
        return ShardedGibbs(
            self.latent,
            len(problem.train),
            problem.dim,
            problem.theta0.float(),
            cfg.step_size,
            cfg.temperature,
            self.seed,
            self.comm,
            preconditioner=cfg.preconditioner,
            bank_path=self._bank_path(),
            theta_curvature=self._curvature,
            extra_fields=WARMUP_FIELDS if cfg.warmup_steps > 0 else (),
            sync_every=cfg.sync_every,
        )

    # -- files -------------------------------------------------------------------------------------
    @property
    def rank_dir(self) -> Path | None:
        return None if self.workdir is None else self.workdir / SHARDS_DIR / f"rank-{self.comm.rank}"

    def _bank_path(self) -> Path | None:
        return None if self.config.task_bank == "memory" else self.rank_dir / "bank"  # type: ignore[operator]

    def _fingerprint(self) -> dict[str, Any]:
        config = {k: v for k, v in self.config.to_dict().items() if k not in _NOT_IN_CHAIN}
        return {
            "config": config,
            "seed": self.seed,
            "world_size": self.comm.world_size,
            "dim": self.problem.dim,
            "task_names": [t.name for t in self.problem.train],
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "run": self._fingerprint(),
            "sampler": self.sampler.state_dict(),
            "warmup": self.warmup.state_dict() if self.warmup is not None else {},
            "mixtures": {str(k): m.state_dict() for k, m in self.mixtures.items()},
            "trace": self.trace,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["run"] != json.loads(json.dumps(self._fingerprint())):
            raise MetaTrainingError(
                "the checkpoint was written by a run with other settings, tasks, seed or number of ranks; "
                "resume with exactly the same command, or start a new run in another output directory"
            )
        self.sampler.load_state_dict(state["sampler"])
        if self.warmup is not None:
            self.warmup.load_state_dict(state["warmup"])
        for k, mixture in self.mixtures.items():
            mixture.load_state_dict(state["mixtures"][str(k)])
        self.trace = {name: [float(v) for v in values] for name, values in state["trace"].items()}

    def checkpoint(self) -> None:
        """Phase 1: save this rank's state; barrier; phase 2: commit the bank, drop old checkpoints."""
        folder = self.rank_dir
        assert folder is not None
        step = self.sampler.step_count
        save_checkpoint(folder / f"{_CKPT}{step:09d}", self.state_dict())
        self.comm.barrier()
        self.sampler.bank.commit()
        for old in checkpoint_steps(folder)[:-2]:
            shutil.rmtree(folder / f"{_CKPT}{old:09d}", ignore_errors=True)

    def _resume(self) -> None:
        folder = self.rank_dir
        if folder is None:
            raise MetaTrainingError("resume needs a working directory holding a checkpoint")
        saved = checkpoint_steps(folder)
        common = self.comm.all_reduce_min(saved[-1] if saved else -1)
        if common < 0:
            return  # some rank has none: every rank starts over (no bank row was committed anywhere)
        if common not in saved:
            raise MetaTrainingError(
                f"rank {self.comm.rank} has no checkpoint of step {common}, which another rank resumes "
                f"from (it has {saved}); the run folders were changed by hand: start a new run"
            )
        self.load_state_dict(load_checkpoint(folder / f"{_CKPT}{common:09d}"))
        self.resumed_from = common
        logger.info("rank %d resumed from step %d", self.comm.rank, common)
        for newer in (s for s in saved if s > common):
            shutil.rmtree(folder / f"{_CKPT}{newer:09d}", ignore_errors=True)

    def _start_fresh(self) -> None:
        folder = self.rank_dir
        if folder is not None and folder.is_dir():  # this run's own files from an earlier attempt
            shutil.rmtree(folder)
        if self.comm.rank == 0 and self.workdir is not None:
            (self.workdir / METRICS_FILE).unlink(missing_ok=True)

    # -- the loop ----------------------------------------------------------------------------------
    def _grad_fn(self, step: int) -> Callable[[int, torch.Tensor], torch.Tensor]:
        cfg = self.config

        def grad_fn(i: int, theta: torch.Tensor) -> torch.Tensor:
            task = self.problem.train[i]
            gen = keys.generator(self.seed, keys.BATCH, step, i)
            loss, grad = loss_and_grad(task, theta, sample_batch(self._sizes[i], cfg.batch_size, gen))
            if not math.isfinite(loss):
                raise FloatingPointError(f"non-finite loss on task {task.name!r}")
            self._losses.append(loss)
            return -(self._sizes[i] / cfg.tau) * grad

        return grad_fn

    @torch.no_grad()
    def _log_lik(self, i: int, rows: torch.Tensor) -> torch.Tensor:
        task = self.problem.train[i]
        probe = torch.arange(min(self._sizes[i], SEEDING_EXAMPLES))
        losses = torch.tensor([float(task.loss(row, probe)) for row in rows], dtype=torch.float64)
        return -(self._sizes[i] / self.config.tau) * losses

    def run(self, resume: bool = False) -> LearnedPrior:
        """Meta-train (continuing from the ranks' common checkpoint if ``resume``); every rank returns
        the same prior."""
        if not resume:
            self._start_fresh()  # an earlier attempt's files in this run's folder go first
        self.sampler = self._build_sampler()
        cfg = self.config
        self.warmup = None
        if cfg.warmup_steps > 0:
            self.warmup = ShardedWarmup(
                self.sampler, cfg.warmup_lr, cfg.sigma, cfg.beta, assign_after=cfg.warmup_steps // 4
            )
        if resume:
            self._resume()
        cfg, sampler = self.config, self.sampler
        schedule = cfg.schedule
        n = len(self.problem.train)
        structured_clusters = isinstance(self.latent, StructuredLatent) and cfg.clusters > 1
        bar: Any = _NoBar()
        if self.comm.rank == 0:
            desc = f"LiFT meta-training ({self.comm.world_size} ranks)"
            bar = progress_bar(total=cfg.steps, desc=desc, initial=sampler.step_count, unit="step")
        try:
            while sampler.step_count < cfg.steps:
                step = sampler.step_count
                phase = schedule.phase(step)
                if self.schedule is not None:
                    tasks = self.schedule(step)
                else:
                    tasks = random_schedule(self.seed, n, self.comm.world_size, cfg.tasks_per_step, step)
                log_lik = self._log_lik if structured_clusters else None
                try:
                    if phase == "warmup" and self.warmup is not None:
                        self.warmup.step(tasks, self._grad_fn(step), log_lik_fn=log_lik)
                    else:
                        if self.warmup is not None and not sampler.chain_started:
                            sampler.start_chain(self.warmup)
                        sampler.step(tasks, self._grad_fn(step), log_lik_fn=log_lik)
                except FloatingPointError as err:
                    raise MetaTrainingError(f"meta-training stopped at step {step}: {err}") from None
                if schedule.keeps(step):
                    if isinstance(self.latent, StructuredLatent):
                        sampler.record()
                    phi = sampler.phi
                    for mixture in self.mixtures.values():
                        mixture.partial_fit(phi)
                    self.trace["phi_distance"].append(float((phi - self.problem.theta0).norm()))
                bar.update(1)
                done = sampler.step_count
                if done % cfg.log_every == 0 or done == cfg.steps:
                    self._log(phase)
                if self.workdir is not None and done % cfg.checkpoint_every == 0:
                    self.checkpoint()
        finally:
            bar.close()
        sampler.flush(final=True)
        self.comm.barrier()  # the ranks finish together (none exits while another still reduces)
        if isinstance(self.latent, StructuredLatent):
            return structured_prior(sampler, self.problem, cfg, self.seed, self.trace)
        priors = {
            k: mixture_prior(m, self.problem, cfg, k, self.seed, self.trace) for k, m in self.mixtures.items()
        }
        main = priors.pop(cfg.k)
        main.siblings = priors
        return main

    def _log(self, phase: str) -> None:
        losses, self._losses = self._losses, []
        self.sampler.flush()
        phi = self.warmup.phi if phase == "warmup" and self.warmup is not None else self.sampler.phi
        record: dict[str, Any] = {
            "step": self.sampler.step_count,
            "phase": phase,
            "loss": sum(losses) / len(losses) if losses else math.nan,  # rank 0's own tasks
            "ranks": self.comm.world_size,
            "phi_distance": float((phi - self.problem.theta0).norm()),
            "comm_seconds": round(self.comm.seconds, 4),
        }
        if isinstance(self.latent, StructuredLatent):
            record["beta_mean"] = float(self.latent.beta2.mean().sqrt())
            record["cluster_sizes"] = [int(c) for c in self.latent.counts]
        if self.comm.rank != 0:
            return
        if self.on_log is not None:
            self.on_log(record)
        if self.workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            with (self.workdir / METRICS_FILE).open("a") as handle:
                handle.write(json.dumps(record) + "\n")
