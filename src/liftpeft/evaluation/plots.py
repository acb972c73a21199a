"""Report figures (matplotlib, Agg backend): method bars, per-task scatter, K and sigma = beta sweeps."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from liftpeft.evaluation.stats import MethodSummary


def method_bars(summaries: list[MethodSummary], path: Path, title: str) -> Path:
    names = [s.method for s in summaries][::-1]
    means = [s.mean for s in summaries][::-1]
    stds = [s.std for s in summaries][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.5))
    colors = ["#c0392b" if i == len(names) - 1 else "#5d6d7e" for i in range(len(names))]
    ax.barh(names, means, xerr=stds, color=colors, capsize=3)
    chance = next((s.chance for s in summaries if s.chance is not None), None)
    if chance is not None:
        ax.axvline(chance, color="k", ls="--", lw=1, label=f"chance {chance:.3f}")
        ax.legend(loc="lower right")
    lo = min(m - s for m, s in zip(means, stds))
    hi = max(m + s for m, s in zip(means, stds))
    pad = 0.15 * (hi - lo + 1e-9)
    ax.set_xlim(min(lo - pad, chance if chance is not None else lo - pad), hi + pad)
    ax.set_xlabel(f"{summaries[0].metric} (mean ± std over seeds of the mean over tasks)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def task_scatter(summaries: list[MethodSummary], path: Path, reference: str) -> Path | None:
    ref = next((s for s in summaries if s.method == reference), None)
    others = [s for s in summaries if s.method != reference][:6]
    if ref is None or not others:
        return None
    cols = min(3, len(others))
    rows = -(-len(others) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.4 * rows), squeeze=False)
    for ax, s in zip(axes.flat, others):
        tasks = sorted(set(s.task_scores) & set(ref.task_scores))
        x = [s.task_scores[t] for t in tasks]
        y = [ref.task_scores[t] for t in tasks]
        lo, hi = min(x + y), max(x + y)
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
        ax.scatter(x, y, s=12, alpha=0.7, color="#c0392b")
        ax.set_xlabel(s.method)
        ax.set_ylabel(reference)
        above = sum(b > a for a, b in zip(x, y))
        ax.set_title(f"{reference} above diagonal: {above}/{len(tasks)}", fontsize=9)
    for ax in list(axes.flat)[len(others) :]:
        ax.axis("off")
    fig.suptitle(f"per-task {ref.metric} (mean over seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sweep(
    points: list[tuple[float, MethodSummary]], path: Path, xlabel: str, title: str, log_x: bool = False
) -> Path | None:
    if len(points) < 2:
        return None
    points = sorted(points, key=lambda p: p[0])
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.errorbar(
        [p[0] for p in points],
        [p[1].mean for p in points],
        yerr=[p[1].std for p in points],
        marker="o",
        capsize=3,
        color="#c0392b",
    )
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(points[0][1].metric)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def traces(traces: dict[str, list[float]], path: Path, statistic: str = "phi_distance") -> Path | None:
    """Trace plot of one summary statistic of the kept phi samples, one line per chain."""
    series = {name: t.get(statistic, []) for name, t in traces.items() if t.get(statistic)}
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, values in list(series.items())[:8]:
        ax.plot(values, lw=0.9, label=name)
    ax.set_xlabel("kept sample")
    ax.set_ylabel(statistic.replace("_", " "))
    ax.set_title("LiFT sampler traces")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
