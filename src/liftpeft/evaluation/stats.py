"""Statistics over seeds and tasks: mean +- std, paired t-tests against the reference, MAD.

For each method, the *score of a seed* is the mean of the primary metric over the test tasks; the
table reports the mean and standard deviation (ddof=1) of these over seeds. Two paired t-tests
(scipy) compare a method with the reference: over tasks (each task's score averaged over seeds; n =
tasks) and over seeds (n = seeds). MAD is the mean over tasks of |reference - method| (per-task
scores averaged over seeds).
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scipy import stats as scipy_stats


@dataclass
class MethodSummary:
    method: str
    metric: str
    n_seeds: int
    n_tasks: int
    mean: float
    std: float
    seed_scores: dict[int, float]
    task_scores: dict[str, float]
    delta: float | None = None  # method - reference (mean over seeds)
    p_tasks: float | None = None
    p_seeds: float | None = None
    mad: float | None = None
    wins: int | None = None  # tasks where the reference beats this method
    losses: int | None = None
    chance: float | None = None
    meta_train_seconds: float | None = None
    adapt_seconds: float | None = None
    extra: dict[str, float] = field(default_factory=dict)


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    path = Path(path)
    path = path / "results.jsonl" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"no results in {path}; run `liftpeft bench` first")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan


def summarize(
    rows: list[dict[str, Any]], reference: str = "lift", metric: str | None = None
) -> list[MethodSummary]:
    """One ``MethodSummary`` per method, the reference first, the rest by decreasing score."""
    if not rows:
        raise ValueError("no result rows to summarise")
    metric = metric or rows[0]["primary_metric"]
    by_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_method[row["method"]].append(row)
    summaries = {name: _summarize_method(name, rs, metric) for name, rs in by_method.items()}
    ref = summaries.get(reference)
    if ref is not None:
        for s in summaries.values():
            if s is not ref:
                _compare(s, ref)
    higher = rows[0].get("higher_is_better", True)
    rest = sorted(
        (s for n, s in summaries.items() if n != reference), key=lambda s: -s.mean if higher else s.mean
    )
    return ([ref] if ref is not None else []) + rest


def _summarize_method(name: str, rows: list[dict[str, Any]], metric: str) -> MethodSummary:
    per_seed: dict[int, list[float]] = defaultdict(list)
    per_task: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        value = row["metrics"][metric]
        per_seed[row["seed"]].append(value)
        per_task[row["task"]].append(value)
    seed_scores = {seed: _mean(v) for seed, v in sorted(per_seed.items())}
    values = list(seed_scores.values())
    chance = [r["metrics"]["chance_accuracy"] for r in rows if "chance_accuracy" in r["metrics"]]
    return MethodSummary(
        method=name,
        metric=metric,
        n_seeds=len(seed_scores),
        n_tasks=len(per_task),
        mean=_mean(values),
        std=statistics.stdev(values) if len(values) > 1 else 0.0,
        seed_scores=seed_scores,
        task_scores={t: _mean(v) for t, v in sorted(per_task.items())},
        chance=_mean(chance) if chance else None,
        meta_train_seconds=_mean({r["seed"]: r.get("meta_train_seconds", math.nan) for r in rows}.values()),
        adapt_seconds=_mean(r.get("adapt_seconds", math.nan) for r in rows),
    )


def _paired_p(a: list[float], b: list[float]) -> float | None:
    if len(a) < 2 or all(x == y for x, y in zip(a, b)):
        return None if len(a) < 2 else 1.0
    return float(scipy_stats.ttest_rel(a, b).pvalue)


def _compare(s: MethodSummary, ref: MethodSummary) -> None:
    s.delta = s.mean - ref.mean
    tasks = sorted(set(s.task_scores) & set(ref.task_scores))
    if tasks:
        a = [ref.task_scores[t] for t in tasks]
        b = [s.task_scores[t] for t in tasks]
        s.p_tasks = _paired_p(a, b)
        s.mad = _mean(abs(x - y) for x, y in zip(a, b))
        s.wins = sum(x > y for x, y in zip(a, b))
        s.losses = sum(x < y for x, y in zip(a, b))
    seeds = sorted(set(s.seed_scores) & set(ref.seed_scores))
    if seeds:
        s.p_seeds = _paired_p([ref.seed_scores[i] for i in seeds], [s.seed_scores[i] for i in seeds])
