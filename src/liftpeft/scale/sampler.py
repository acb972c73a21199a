"""SGLD-Gibbs data-parallel over tasks: each rank owns a shard of the tasks and their adapters.

Task ``i`` belongs to rank ``i % W`` and sits in row ``i // W`` of that rank's ``TaskBank``. Every rank
calls ``step(tasks, grad_fn)`` with the same list of tasks for the step (a shared schedule); each
updates the tasks it owns by SGLD, computes its change of the latent's sufficient statistics, and the
ranks all-reduce those changes (one float64 vector of O(K d) per step, independent of N). Every rank
then draws the shared latent from the same generator: the same ``phi`` everywhere, no broadcast.

Noise and minibatches are keyed by ``(seed, step, task)`` (``keys``), so the chain does not depend on
the number of ranks: W processes and one process given the same schedule take the same steps. With
two ranks and at most one visited task per rank per step the sums are the same floating-point
additions as in one process, so the runs agree bit for bit; with more terms they agree up to the
float64 reduction order (~1e-16 relative on the statistics).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from liftpeft.core.sgld import PSGLDState, check_step_size, langevin_kernel, recommended_step_size
from liftpeft.core.structured import posterior_summary
from liftpeft.scale import keys
from liftpeft.scale.bank import TaskBank
from liftpeft.scale.comm import Communicator, LocalCommunicator
from liftpeft.scale.latent import LogLikFn, PaperLatent
from liftpeft.scale.structured_latent import StructuredLatent

Latent = PaperLatent | StructuredLatent
TaskGradFn = Callable[[int, torch.Tensor], torch.Tensor]


def owner_of(task: int, world_size: int) -> int:
    return task % world_size


def shard_of(rank: int, n_tasks: int, world_size: int) -> list[int]:
    """The global ids of the tasks rank ``rank`` owns (row ``j`` holds task ``rank + j W``)."""
    return list(range(rank, n_tasks, world_size))


def random_schedule(seed: int, n_tasks: int, world_size: int, per_rank: int, step: int) -> list[int]:
    """``per_rank`` distinct tasks of every rank's shard for ``step`` (the same list on every rank).

    O(W per_rank) per step, whatever N: a few draws with rejection of repeats, no permutation of N.
    """
    out: list[int] = []
    for rank in range(world_size):
        size = len(range(rank, n_tasks, world_size))
        k = min(per_rank, size)
        gen = keys.generator(seed, keys.SCHEDULE, step, rank)
        rows: list[int] = []
        while len(rows) < k:
            r = int(torch.randint(size, (1,), generator=gen))
            if r not in rows:
                rows.append(r)
        out.extend(rank + r * world_size for r in rows)
    return out


class ShardedGibbs:
    """The sharded sampler over offsets ``u_i = theta_i - center`` (see the module docstring).

    Args:
        latent: ``PaperLatent`` or ``StructuredLatent`` (the shared part and its statistics).
        n_tasks, dim: all tasks of the run (every rank), adapter dimension.
        center: ``(d,)`` prior centre ``c`` (the PEFT initialisation).
        step_size, temperature, preconditioner: the task adapters' SGLD kernel.
        seed: keys every draw (noise, schedule, shared latent).
        comm: the ranks (default: one process).
        bank_path: this rank's bank folder (``None``: in memory).
    """

    def __init__(
        self,
        latent: Latent,
        n_tasks: int,
        dim: int,
        center: torch.Tensor,
        step_size: float,
        temperature: float = 1.0,
        seed: int = 0,
        comm: Communicator | None = None,
        *,
        preconditioner: str | None = None,
        rmsprop_alpha: float = 0.99,
        rmsprop_eps: float = 1e-5,
        bank_path: Any = None,
        theta_curvature: float | None = None,
        extra_fields: tuple[str, ...] = (),
        sync_every: int = 1,
    ) -> None:
        if not (temperature >= 0 and math.isfinite(temperature)):
            raise ValueError(f"temperature must be finite and >= 0, got {temperature!r}")
        self.latent, self.n_tasks, self.dim = latent, int(n_tasks), int(dim)
        self.center = center.detach().float().reshape(dim).clone()
        self.step_size, self.temperature, self.seed = float(step_size), float(temperature), int(seed)
        self.comm = comm or LocalCommunicator()
        self.rank, self.world_size = self.comm.rank, self.comm.world_size
        if preconditioner is None and theta_curvature is not None:
            check_step_size(
                step_size,
                theta_curvature,
                f"the task adapters (the task prior has curvature {theta_curvature:g})",
                f"Lower step_size below {recommended_step_size(theta_curvature):.3g} or use preconditioner='rmsprop'.",
            )
        if sync_every < 1:
            raise ValueError(f"sync_every must be >= 1, got {sync_every}")
        self.sync_every = int(sync_every)
        self._acc: torch.Tensor | None = None  # changes of the steps since the last all-reduce
        self._acc_steps = 0
        self.preconditioner = preconditioner
        self.kernel = langevin_kernel(preconditioner, rmsprop_alpha, rmsprop_eps)
        self.tasks = shard_of(self.rank, self.n_tasks, self.world_size)
        fields = (("theta", "theta_sq") if preconditioner else ("theta",)) + tuple(extra_fields)
        self.bank = TaskBank(len(self.tasks), dim, fields, path=bank_path)
        self.visits = torch.zeros(len(self.tasks), 1, dtype=torch.long)
        self.step_count = 0
        # after a warm-up the bank holds offsets delta_i from the warm-up's centres; a task's row becomes
        # u_i = base[z_i] + delta_i at its first visit (no pass over all adapters at the chain's start)
        self.chain_started = False
        self._pending: Any = None  # (the all-reduce in flight, its temperature, its step)
        self._base = torch.zeros(0, dim)
        self._base_z = torch.zeros(len(self.tasks), dtype=torch.long)
        self._converted = torch.ones(len(self.tasks), dtype=torch.bool)
        self.latent.set_stats(self.comm.all_reduce_sum(self.latent.start(self.tasks)))
        self.latent.draw(1.0)

    def owns(self, task: int) -> bool:
        return owner_of(task, self.world_size) == self.rank

    def theta(self, task: int) -> torch.Tensor:
        """Task ``task``'s adapter (d,) (this rank must own it)."""
        if not self.owns(task):
            raise IndexError(
                f"task {task} belongs to rank {owner_of(task, self.world_size)}, not {self.rank}"
            )
        return self.center + self._read_u(task // self.world_size)

    def _read_u(self, row: int) -> torch.Tensor:
        u = self.bank.read("theta", row)
        if not bool(self._converted[row]):
            u += self._base[int(self._base_z[row])]
        return u

    def start_chain(self, warmup: Any) -> None:
        """Start sampling from ``warmup`` (a ``ShardedWarmup``): its centres, assignments and sums."""
        self.flush()
        self._base = warmup.v.clone()
        self._base_z = warmup.z.clone()
        self._converted = torch.zeros(len(self.tasks), dtype=torch.bool)
        self.latent.start_from_warmup(warmup.v, warmup.z, warmup.D, warmup.E, warmup.n)
        self.chain_started = True

    @property
    def phi(self) -> torch.Tensor:
        """The shared centre (d,) float32 (the structured prior's count-weighted mean of its centres)."""
        self.flush()
        return self.center + self.latent.phi_offset().float()

    def step(
        self,
        tasks: Sequence[int],
        grad_fn: TaskGradFn,
        temperature: float | None = None,
        log_lik_fn: LogLikFn | None = None,
    ) -> None:
        """Update the owned tasks among ``tasks`` (the step's schedule, the same on every rank), then the
        shared latent. ``grad_fn(i, theta)`` returns ``d/dtheta log p(D_i | theta)`` (d,)."""
        temp = self.temperature if temperature is None else float(temperature)
        if len(set(tasks)) != len(tasks) or any(not 0 <= int(i) < self.n_tasks for i in tasks):
            raise ValueError(
                f"the tasks of one step must be distinct ids in [0, {self.n_tasks}), got {list(tasks)}"
            )
        # the likelihood gradients need no shared state: they are computed while the previous step's
        # sum is still in flight, then the shared latent takes that sum, then the adapters their step
        owned = [int(t) for t in tasks if self.owns(int(t))]
        grads = {}
        for i in owned:
            theta = self.center + self._read_u(i // self.world_size)
            grads[i] = grad_fn(i, theta)
            if grads[i].shape != theta.shape or not bool(torch.isfinite(grads[i]).all()):
                raise FloatingPointError(
                    f"the likelihood gradient of task {i} at step {self.step_count} is non-finite or not "
                    f"of shape ({self.dim},); lower the step size or the likelihood scale, and resume"
                )
        self.flush()
        delta = torch.zeros(self.latent.size, dtype=torch.float64)
        for i in owned:
            row = i // self.world_size
            u = self._read_u(row)
            grad = self.latent.theta_grad(row, u).add_(grads.pop(i).to(u))
            state = None
            if self.preconditioner:
                state = PSGLDState(self.bank.read("theta_sq", row)[None], self.visits[row : row + 1])
            noise = keys.generator(self.seed, keys.NOISE, self.step_count, i)
            new, state = self.kernel.step(u[None], grad[None], state, self.step_size, noise, temp)
            u_new, change = self.latent.visit(row, i, u, new[0], self.step_count, temp, log_lik_fn)
            delta += change
            self.bank.write("theta", row, u_new)
            self._converted[row] = True
            if state is not None:
                self.bank.write("theta_sq", row, state.square_avg[0])
                self.visits[row] = state.count
        self._acc = delta if self._acc is None else self._acc.add_(delta)
        self._acc_steps += 1
        if (self.step_count + 1) % self.sync_every == 0:
            self._send(temp)
        self.step_count += 1

    def _send(self, temp: float) -> None:
        assert self._acc is not None
        self._pending = (self.comm.all_reduce_sum_async(self._acc), temp, self.step_count, self._acc_steps)
        self._acc, self._acc_steps = None, 0

    def flush(self, final: bool = False) -> None:
        """Let the shared latent take the sum still in flight (before anything reads the shared state);
        ``final`` (every rank, at the end of a run) also sends the changes not yet sent."""
        if final and self._acc is not None:
            self._send(self.temperature)
        if self._pending is not None:
            handle, temp, step, covered = self._pending
            self._pending = None
            self.latent.update(handle.wait(), temp, step, covered)

    def record(self) -> None:
        """Add the current state to the structured prior's posterior summary (a kept step)."""
        self.flush()
        self.latent.record(self.temperature)

    # -- the run's result ----------------------------------------------------------------------------
    def gather(self, local: torch.Tensor) -> torch.Tensor:
        """Per-task rows of this shard ``(n_local, ...)`` -> all tasks ``(N, ...)`` on every rank."""
        full = torch.zeros((self.n_tasks, *local.shape[1:]), dtype=torch.float64)
        if len(self.tasks):
            full[torch.tensor(self.tasks)] = local.double()
        return self.comm.all_reduce_sum(full.reshape(-1)).reshape(full.shape)

    def summary(self, variance_floor: float = 1e-12) -> dict[str, torch.Tensor]:
        """``StructuredGibbs.summary()`` of a sharded structured run (all ranks take part)."""
        self.flush(final=True)
        lat = self.latent
        if not isinstance(lat, StructuredLatent):
            raise TypeError("summary() is the structured prior's; the paper's prior is fitted to phi samples")
        if lat.n_records == 0:
            lat.record(self.temperature)
        sums = (lat.sum_phi, lat.sum_phi_sq, lat.sum_weights, lat.sum_beta2)
        local = (self.gather(lat.sum_lam), self.gather(lat.assign_counts))
        return posterior_summary(lat.model, lat.n_records, *sums, *local, variance_floor)

    # -- checkpoints ---------------------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        return {
            "sync_every": self.sync_every,
            "n_tasks": self.n_tasks,
            "dim": self.dim,
            "world_size": self.world_size,
            "rank": self.rank,
            "preconditioner": self.preconditioner,
            "latent": type(self.latent).__name__,
        }

    def state_dict(self) -> dict[str, Any]:
        """The rank's state: shared latent, its shard's local state, the bank rows not yet committed."""
        self.flush()
        return {
            "config": self.fingerprint(),
            "step_count": self.step_count,
            "latent": self.latent.state_dict(),
            "visits": self.visits.clone(),
            "bank": self.bank.pending(),
            "chain_started": self.chain_started,
            "unsent": self._acc.clone() if self._acc is not None else torch.zeros(0, dtype=torch.float64),
            "unsent_steps": self._acc_steps,
            "base": self._base.clone(),
            "base_z": self._base_z.clone(),
            "converted": self._converted.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["config"] != self.fingerprint():
            raise ValueError(
                f"the checkpoint was written by a sampler configured as {state['config']}, this one is "
                f"{self.fingerprint()}; resume with the same tasks, settings and number of ranks"
            )
        self.step_count = int(state["step_count"])
        self.latent.load_state_dict(state["latent"])
        self.visits = state["visits"].clone()
        self.bank.apply(state["bank"])
        self.chain_started = bool(state["chain_started"])
        self._acc_steps = int(state["unsent_steps"])
        self._acc = state["unsent"].clone() if self._acc_steps else None
        self._base, self._base_z = state["base"].clone(), state["base_z"].clone()
        self._converted = state["converted"].clone()
