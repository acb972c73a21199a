"""Speed-up of W = 2 ranks over W = 1 on a compute-bound backbone step, and communication's share.

Each visited task runs a real forward and backward pass through a frozen two-layer network with a
rank-r LoRA update of its first layer (the adapter ``theta``), on a minibatch of its own data. One
rank visits one task per step, so W ranks visit W tasks per step; the speed-up is the throughput in
task visits per second, W = 2 over W = 1, each rank on one thread. The two settings are measured
alternately (1, 2, 1, 2, ...) in one run and the medians are compared (this machine is shared and
noisy). Communication: the seconds a rank spends blocked in the all-reduce, as a share of its step
time (the sampler computes the next step's likelihood gradients while the sum is in flight).

    python benchmarks/scale_speedup.py                 # width 1024, rank 8, batch 128, 3 rounds
    python benchmarks/scale_speedup.py --quick         # a smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from liftpeft.core.prior import HierarchicalPrior
from liftpeft.scale.comm import LocalCommunicator, TorchDistributedCommunicator
from liftpeft.scale.latent import PaperLatent
from liftpeft.scale.sampler import ShardedGibbs, random_schedule


def lora_objective(width: int, rank: int, batch: int, n_tasks: int):
    """``grad(i, theta)``: d/dtheta of task i's squared error through ``relu(x (W0 + A B)) W1``."""
    gen = torch.Generator().manual_seed(0)
    w0 = torch.randn(width, width, generator=gen) / width**0.5
    w1 = torch.randn(width, 16, generator=gen) / width**0.5
    xs = torch.randn(n_tasks, batch, width, generator=gen)
    ys = torch.randn(n_tasks, batch, 16, generator=gen)
    dim = 2 * width * rank

    def grad(i: int, theta: torch.Tensor) -> torch.Tensor:
        theta = theta.detach().requires_grad_(True)
        a, b = theta[: width * rank].view(width, rank), theta[width * rank :].view(rank, width)
        out = torch.relu(xs[i] @ w0 + (xs[i] @ a) @ b) @ w1
        loss = (out - ys[i]).square().mean()
        (g,) = torch.autograd.grad(loss, theta)
        return -g

    return grad, dim


def run_rank(rank: int, world: int, port: int, args, steps: int, result, alone: bool = False) -> None:
    torch.set_num_threads(1)
    if alone:  # W processes that do not talk: the machine's own ceiling for W-fold throughput
        comm, world = LocalCommunicator(), 1
    elif world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
        comm = TorchDistributedCommunicator()
    else:
        comm = LocalCommunicator()
    n = args.tasks
    grad, d = lora_objective(args.width, args.rank, args.batch, n)
    prior = HierarchicalPrior(1.0, 0.1, center=torch.zeros(d))
    sampler = ShardedGibbs(PaperLatent(prior, n, d, seed=0), n, d, torch.zeros(d), 1e-4, seed=0, comm=comm,
                           preconditioner="rmsprop", sync_every=args.sync_every)  # fmt: skip
    for step in range(5):  # warm-up (allocations, first all-reduce)
        sampler.step(random_schedule(0, n, world, 1, step), grad)
    comm.seconds = 0.0
    start = time.perf_counter()
    for step in range(5, 5 + steps):
        sampler.step(random_schedule(0, n, world, 1, step), grad)
    sampler.flush()
    seconds = time.perf_counter() - start
    if world > 1 and not alone:
        dist.barrier()
        dist.destroy_process_group()
    result.put((rank, seconds, comm.seconds))


def measure(world: int, args, steps: int, alone: bool = False) -> tuple[float, float]:
    """(task visits per second, communication share of the step) for ``world`` ranks."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=run_rank, args=(r, world, port, args, steps, queue, alone)) for r in range(world)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    slowest = max(sec for _, sec, _ in results)  # alone: W independent runs of `steps` visits each
    comm_share = statistics.mean(c / sec for _, sec, c in results)
    return world * steps / slowest, comm_share


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sync-every", type=int, default=1, help="steps between the all-reduces")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.width, args.steps, args.rounds = 128, 30, 1
    settings = {"1 rank": (1, False), "2 ranks": (2, False), "2 processes, no all-reduce": (2, True)}
    rates: dict[str, list[float]] = {name: [] for name in settings}
    shares: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(args.rounds):  # the settings alternate, so that the machine's load hits them alike
        for name, (world, alone) in settings.items():
            rate, share = measure(world, args, args.steps, alone)
            rates[name].append(rate)
            shares[name].append(share)
    d = 2 * args.width * args.rank
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    )
    print(f"# scale-out speed-up ({machine})")
    print(f"backbone: width {args.width}, LoRA rank {args.rank} (d = {d}), batch {args.batch}; "
          f"{args.steps} steps per measurement, {args.rounds} rounds, one thread per rank, "
          f"an all-reduce every {args.sync_every} step(s)\n")  # fmt: skip
    print(
        "| setting | task visits / s (median) | all rounds | blocked in the all-reduce (share of the step) |"
    )
    print("| --- | --- | --- | --- |")
    for name in settings:
        runs = ", ".join(f"{r:.1f}" for r in rates[name])
        median = statistics.median(rates[name])
        print(f"| {name} | {median:.1f} | {runs} | {statistics.median(shares[name]):.1%} |")
    base = statistics.median(rates["1 rank"])
    speedup = statistics.median(rates["2 ranks"]) / base
    ceiling = statistics.median(rates["2 processes, no all-reduce"]) / base
    print(f"\nspeed-up W=2 / W=1: {speedup:.2f}x (target >= 1.8x); two processes that never communicate: "
          f"{ceiling:.2f}x (this machine's ceiling)")  # fmt: skip


if __name__ == "__main__":
    main()
