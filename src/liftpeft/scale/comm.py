"""Who the ranks are and how they add up their statistics: one process, or ``torch.distributed``.

A communicator offers what the sharded sampler needs and nothing more: ``rank``, ``world_size``,
``all_reduce_sum`` of a float64 vector (the sufficient statistics, O(d) per step whatever the number of
tasks), ``all_reduce_min`` / ``all_reduce_max`` of an integer (agreeing on a checkpoint to resume),
``same_everywhere`` (refusing ranks that disagree on tasks or settings) and ``barrier``, and
``all_reduce_sum_async`` (a sum that runs while the rank computes). Time spent blocked in
communication is accumulated in ``seconds`` so that benchmarks can report its share of a step.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import time
from datetime import timedelta
from typing import Any, Protocol

import torch
import torch.distributed as dist


class RanksDisagreeError(RuntimeError):
    """The ranks of one run were started with different tasks or settings."""


class PendingSum(Protocol):
    def wait(self) -> torch.Tensor: ...


class _Done:
    """A reduction already complete (one process)."""

    def __init__(self, values: torch.Tensor) -> None:
        self.values = values

    def wait(self) -> torch.Tensor:
        return self.values


class Communicator(Protocol):
    rank: int
    world_size: int
    seconds: float

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor: ...

    def all_reduce_sum_async(self, values: torch.Tensor) -> PendingSum: ...

    def all_reduce_min(self, value: int) -> int: ...

    def all_reduce_max(self, value: int) -> int: ...

    def barrier(self) -> None: ...

    def same_everywhere(self, what: str, value: Any) -> None: ...


def _digest(value: Any) -> int:
    text = json.dumps(value, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "big")


class LocalCommunicator:
    """A run of one process: every reduction is the identity."""

    rank = 0
    world_size = 1

    def __init__(self) -> None:
        self.seconds = 0.0

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        return values

    def all_reduce_sum_async(self, values: torch.Tensor) -> PendingSum:
        return _Done(values)

    def all_reduce_min(self, value: int) -> int:
        return int(value)

    def all_reduce_max(self, value: int) -> int:
        return int(value)

    def barrier(self) -> None:
        return None

    def same_everywhere(self, what: str, value: Any) -> None:
        return None


class TorchDistributedCommunicator:
    """The ranks of an initialised ``torch.distributed`` process group (gloo on CPU, NCCL on GPU).

    Reductions run on the group's device (CPU for gloo, the rank's GPU for NCCL) and come back as a
    CPU tensor; gloo's ring all-reduce leaves the same bits on every rank, which the shared draws of
    ``phi`` rely on (every rank draws it from the same generator and the same statistics).
    """

    def __init__(self, group: Any = None) -> None:
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError(
                "torch.distributed is not initialised; launch with torchrun, or call "
                "liftpeft.scale.from_environment() first"
            )
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        backend = dist.get_backend(group)
        self.device = (
            torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        )
        self.seconds = 0.0

    def _reduce(self, values: torch.Tensor, op: Any) -> torch.Tensor:
        start = time.perf_counter()
        buffer = values.to(self.device, copy=True)
        dist.all_reduce(buffer, op=op, group=self.group)
        out = buffer.cpu()
        self.seconds += time.perf_counter() - start
        return out

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        return self._reduce(values, dist.ReduceOp.SUM)

    def all_reduce_sum_async(self, values: torch.Tensor) -> PendingSum:
        """Start the sum and return at once; ``wait()`` gives it (``seconds`` counts only the wait)."""
        buffer = values.to(self.device, copy=True)
        work = dist.all_reduce(buffer, op=dist.ReduceOp.SUM, group=self.group, async_op=True)
        return _InFlight(self, work, buffer)

    def all_reduce_min(self, value: int) -> int:
        return int(self._reduce(torch.tensor([int(value)], dtype=torch.int64), dist.ReduceOp.MIN))

    def all_reduce_max(self, value: int) -> int:
        return int(self._reduce(torch.tensor([int(value)], dtype=torch.int64), dist.ReduceOp.MAX))

    def barrier(self) -> None:
        start = time.perf_counter()
        dist.barrier(group=self.group)
        self.seconds += time.perf_counter() - start

    def same_everywhere(self, what: str, value: Any) -> None:
        mine = _digest(value)
        low, high = self.all_reduce_min(mine), self.all_reduce_max(mine)
        if low != high:
            raise RanksDisagreeError(
                f"the ranks of this run were given different {what} (rank {self.rank} has "
                f"fingerprint {mine:x}); start every rank with exactly the same command and files"
            )


class _InFlight:
    def __init__(self, comm: TorchDistributedCommunicator, work: Any, buffer: torch.Tensor) -> None:
        self.comm, self.work, self.buffer = comm, work, buffer

    def wait(self) -> torch.Tensor:
        start = time.perf_counter()
        self.work.wait()
        out = self.buffer.cpu()
        self.comm.seconds += time.perf_counter() - start
        return out


def is_main_process() -> bool:
    """False on the ranks other than 0 of a torchrun launch (they stay quiet)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def from_environment(timeout_s: float = 600.0) -> Communicator:
    """The communicator of this process: ``torch.distributed`` when launched by torchrun, else local.

    torchrun sets ``WORLD_SIZE``, ``RANK`` and the rendezvous variables; with ``WORLD_SIZE`` > 1 the
    default process group is initialised here (NCCL when CUDA is available, else gloo) unless the
    caller already did.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and not (dist.is_available() and dist.is_initialized()):
        return LocalCommunicator()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
        atexit.register(_shut_down)
    return TorchDistributedCommunicator()


def _shut_down() -> None:
    """Tear the group down before the interpreter exits (left to the exit, gloo may abort the process)."""
    if dist.is_initialized():
        dist.destroy_process_group()
