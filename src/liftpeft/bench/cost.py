"""Per-iteration time and peak memory of a method against plain adapter training, on a benchmark.

``measure_method_cost(config, name, data)`` runs, in this process and side by side:

* **plain training**: No-Meta-Train's fine-tuning (one AdamW step on one minibatch is one step) on
  the first test task, at two step counts; its per-step time is the difference over the difference
  of steps (constant set-up costs cancel);
* **the method's meta-training** at two iteration counts (``meta_steps``, LiFT's ``steps`` with no
  warm-up, or per-task adapter steps for methods built on a zoo of per-task adapters, where one
  iteration is one adapter step: the time is divided by the number of training tasks);
* **the method's test-time adaptation** at two ``adapt_steps``.

Every timed call is first made once untimed with the same seed, so lazy set-up and a backbone's
prefix cache (filled per distinct input the first time it is seen) do not count: the numbers are
those of a long run's steady state.

Peak memory is the increment of :func:`liftpeft.evaluation.memory.measure_peak_memory` over what
was in use before each call (the CUDA allocator on a GPU, the resident set on a CPU): for numbers
that do not depend on what ran before, call this in a fresh process per method
(``benchmarks/method_cost.py`` does). The result's ``ratio`` fields are the method's per-iteration
time over the plain step's, both measured in the same process.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any

import torch

from liftpeft.bench.benchmarks import BenchmarkData
from liftpeft.bench.runner import resolve_method
from liftpeft.evaluation.memory import measure_peak_memory
from liftpeft.methods.base import MetaProblem, available_methods, build_method


def iteration_settings(
    base: str, settings: dict[str, Any], n: int, shortest: int | None = None
) -> tuple[dict[str, Any], str] | None:
    """``settings`` with ``n`` meta-training iterations, and the unit; ``None`` if nothing meta-trains.

    What iterates and what makes iterations alike is the method's declaration (``budget_field``,
    ``cost``). ``shortest``: the smallest ``n`` that will be timed (a chain's thinning is set from
    it, the same for every ``n``, so that differences of times hold the same work per iteration).
    """
    info = available_methods()[base]
    if info.budget_field is None or info.cost is None:
        return None
    fields = {f.name for f in dataclasses.fields(info.config_class)} if info.config_class else set()
    out = {**settings, **{k: v for k, v in info.cost.uniform.items() if k in fields}, info.budget_field: n}
    if info.cost.chain_components is not None:
        # the mixture needs K kept samples to start: keep more often than configured when the timed
        # chain is short (the online-EM update then counts more than it does in a run)
        full = info.config_class(**settings)
        out["thin"] = max(1, min(full.thin, (shortest or n) // (info.cost.chain_components(full) + 1)))
    return out, info.cost.unit


def _timed(fn, device: str | None) -> tuple[Any, float, float]:
    start = time.perf_counter()
    result, peak = measure_peak_memory(fn, device=device)
    if device is not None and str(device).startswith("cuda"):
        torch.cuda.synchronize()
    return result, time.perf_counter() - start, peak.increment_bytes / 2**20


def _per_unit(t1: float, t2: float, n1: int, n2: int) -> float:
    return max(t2 - t1, 0.0) / (n2 - n1)


def measure_method_cost(
    config: dict[str, Any],
    name: str,
    data: BenchmarkData,
    steps: tuple[int, int] = (10, 30),
    adapt_steps: tuple[int, int] = (5, 15),
    reps: int = 3,
    max_tasks: int = 8,
    seed: int = 0,
    device: str | None = None,
) -> dict[str, Any]:
    """Per-iteration seconds and peak-memory increments of ``name`` (a method or a config variant).

    Plain training and the method are timed interleaved, ``reps`` times each; seconds are medians
    over repetitions and ratios medians of the per-repetition ratios. Methods whose iteration is one
    adapter step per training task (zoo methods, Multi-LoRA over every task) are timed on the first
    ``max_tasks`` training tasks (``timed_tasks`` in the result).
    """
    n1, n2 = steps
    a1, a2 = adapt_steps
    if not (0 < n1 < n2 and 0 <= a1 < a2 and reps >= 1):
        raise ValueError(
            f"need 0 < n1 < n2, 0 <= a1 < a2 and reps >= 1, got steps={steps}, adapt_steps={adapt_steps}, "
            f"reps={reps}"
        )
    task = data.test[0]
    problem: MetaProblem = data.problem
    n_tasks = len(problem.train)

    def adapt_seconds(base: str, settings: dict[str, Any], state: Any, n: int) -> tuple[float, float]:
        method = build_method(base, **{**settings, "adapt_steps": n})
        torch.manual_seed(seed)
        _, seconds, mib = _timed(lambda: method.adapt(state, task, seed), device)
        return seconds, mib

    plain_base, plain_settings = resolve_method(config, "no-meta")
    plain_state = build_method(plain_base, **plain_settings).meta_train(problem, seed)  # theta0

    def plain_step() -> tuple[float, float]:
        p1, _ = adapt_seconds(plain_base, plain_settings, plain_state, a1)
        p2, mib = adapt_seconds(plain_base, plain_settings, plain_state, a2)
        return _per_unit(p1, p2, a1, a2), mib

    base, settings = resolve_method(config, name)
    info = available_methods()[base]
    full = info.config_class(**settings) if info.config_class else None
    cost = info.cost
    if cost is not None and cost.chain_components is not None:
        # the mixture starts from K kept samples: the short chain needs more than K steps
        shift = max(0, cost.chain_components(full) + 1 - n1)
        n1, n2 = n1 + shift, n2 + shift
    first = iteration_settings(base, settings, n1, shortest=n1)
    second = iteration_settings(base, settings, n2, shortest=n1)
    unit = first[1] if first else None
    divisor = 1
    if cost is not None and cost.per_task is not None and cost.per_task(full):
        # the same work for every task: time it on the first few tasks (memory then holds that many)
        unit = "per-task adapter step"
        needed = cost.min_tasks(full) if cost.min_tasks is not None else 0
        problem = dataclasses.replace(problem, train=list(problem.train)[: max(max_tasks, needed)])
        divisor = len(problem.train)

    def meta_train() -> tuple[Any, float | None, float | None]:
        if first is None:
            return build_method(base, **settings).meta_train(problem, seed), None, None
        torch.manual_seed(seed)
        _, t1, _ = _timed(lambda: build_method(base, **first[0]).meta_train(problem, seed), device)
        torch.manual_seed(seed)
        state, t2, mib = _timed(lambda: build_method(base, **second[0]).meta_train(problem, seed), device)
        return state, _per_unit(t1, t2, n1, n2) / divisor, mib

    adapts = "adapt_steps" in info.test_time_fields  # its declared test-time budget
    adapt_settings = (second[0] if second else settings) if adapts else None
    # warm-up: first calls pay for lazy set-up, and a backbone with a prefix cache fills it for the
    # batches the timed calls will draw (same seeds), as a long run's steps find it filled
    plain_step()
    warm_state, _, _ = meta_train()
    if adapt_settings is not None:
        adapt_seconds(base, adapt_settings, warm_state, a2)
    records = []
    for _ in range(reps):
        plain, plain_mib = plain_step()
        state, meta, meta_mib = meta_train()
        adapt = adapt_mib = None
        if adapt_settings is not None:
            s1, _ = adapt_seconds(base, adapt_settings, state, a1)
            s2, adapt_mib = adapt_seconds(base, adapt_settings, state, a2)
            adapt = _per_unit(s1, s2, a1, a2)
        records.append((plain, plain_mib, meta, meta_mib, adapt, adapt_mib))

    def median(values: list[float | None]) -> float | None:
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    def ratio(i: int) -> float | None:
        return median([r[i] / r[0] if r[i] is not None and r[0] > 0 else None for r in records])

    last = records[-1]
    return {
        "method": name,
        "base_method": base,
        "family": info.family,
        "settings": settings,
        "n_train_tasks": n_tasks,
        "timed_tasks": len(problem.train),
        "dim": problem.dim,
        "steps": [n1, n2],
        "adapt_steps": list(adapt_steps),
        "reps": reps,
        "unit": unit,
        "timed_thin": first[0].get("thin") if first and cost is not None and cost.chain_components else None,
        "plain_step_seconds": median([r[0] for r in records]),
        "plain_peak_increment_mib": last[1],
        "meta_iteration_seconds": median([r[2] for r in records]),
        "meta_ratio": ratio(2),
        "meta_peak_increment_mib": last[3],
        "adapt_step_seconds": median([r[4] for r in records]),
        "adapt_ratio": ratio(4),
        "adapt_peak_increment_mib": last[5],
    }
