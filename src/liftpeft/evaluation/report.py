"""``liftpeft report``: a Markdown report (tables + PNG plots) of a benchmark results directory."""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from liftpeft.atomic import atomic_write_text
from liftpeft.evaluation import plots
from liftpeft.evaluation.stats import MethodSummary, read_rows, summarize


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.1e}" if value < 1e-3 else f"{value:.3f}"


def summary_table(summaries: list[MethodSummary], reference: str) -> str:
    lines = [
        f"| method | {summaries[0].metric} (mean ± std) | Δ vs {reference} | p (tasks) | p (seeds) | MAD | "
        f"{reference} wins / losses | seeds | tasks | meta-train s | adapt s / task |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        wl = "–" if s.wins is None else f"{s.wins} / {s.losses}"
        name = f"**{s.method}**" if s.method == reference else s.method
        lines.append(
            f"| {name} | {_fmt(s.mean)} ± {_fmt(s.std)} | {_fmt(s.delta, 4) if s.delta is not None else '–'} | "
            f"{_p(s.p_tasks)} | {_p(s.p_seeds)} | {_fmt(s.mad)} | {wl} | {s.n_seeds} | {s.n_tasks} | "
            f"{_fmt(s.meta_train_seconds, 0)} | {_fmt(s.adapt_seconds, 2)} |"
        )
    return "\n".join(lines)


def _sweeps(rows: list[dict[str, Any]], summaries: dict[str, MethodSummary], reference: str):
    """(K, summary) and (sigma, summary) points of the reference method's variants."""
    configs: dict[str, dict[str, Any]] = {}
    bases: dict[str, str] = {}
    for row in rows:
        configs.setdefault(row["method"], row.get("config", {}))
        bases.setdefault(row["method"], row.get("base_method", row["method"]))
    ref_cfg = configs.get(reference)
    if ref_cfg is None:
        return [], []
    ref_base = bases[reference]
    same = [m for m in configs if bases[m] == ref_base]
    k_points, s_points = [], []
    for m in same:
        c = configs[m]
        differs = {k for k in set(c) | set(ref_cfg) if c.get(k) != ref_cfg.get(k)}
        if differs <= {"k", "extra_k"} and "k" in c:
            k_points.append((float(c["k"]), summaries[m]))
        if differs <= {"sigma", "beta", "extra_k"} and "sigma" in c and c.get("sigma") == c.get("beta"):
            s_points.append((float(c["sigma"]), summaries[m]))
    return k_points, s_points


def chain_traces(results_dir: Path) -> dict[str, dict[str, list[float]]]:
    """Traces of kept phi samples of every LiFT state saved by the runner, keyed by state folder."""
    out = {}
    for meta in sorted((results_dir / "states").glob("*/prior.json")):
        trace = json.loads(meta.read_text()).get("trace") or {}
        if trace and any(trace.values()):
            out[meta.parent.name] = trace
    return out


def diagnostics_table(traces: dict[str, dict[str, list[float]]]) -> str:
    from liftpeft.evaluation.diagnostics import effective_sample_size, split_rhat

    lines = ["| chain | statistic | samples | ESS | split R-hat (4 segments) |", "|---|---|---|---|---|"]
    for chain, trace in traces.items():
        for stat, values in trace.items():
            if len(values) >= 8:
                lines.append(
                    f"| {chain} | {stat} | {len(values)} | {effective_sample_size(values):.1f} | "
                    f"{split_rhat(values, n_segments=4):.3f} |"
                )
    return "\n".join(lines)


def write_report(
    results_dir: str | os.PathLike, out: str | os.PathLike | None = None, reference: str | None = None
) -> Path:
    """Write ``report.md``, ``report.html`` and PNG plots into ``out`` (default: the results directory)."""
    results_dir = Path(results_dir)
    out = Path(out) if out is not None else results_dir
    out.mkdir(parents=True, exist_ok=True)
    run = json.loads((results_dir / "run.json").read_text()) if (results_dir / "run.json").is_file() else {}
    rows = read_rows(results_dir)
    reference = reference or run.get("reference", "lift")
    ordered = summarize(rows, reference=reference)
    by_name = {s.method: s for s in ordered}
    benchmark = run.get("benchmark", rows[0].get("benchmark", "?"))
    figures = [plots.method_bars(ordered, out / "methods.png", f"{benchmark}: methods")]
    figures.append(plots.task_scatter(ordered, out / "per_task.png", reference))
    k_points, s_points = _sweeps(rows, by_name, reference)
    figures.append(plots.sweep(k_points, out / "k_sweep.png", "K (mixture components)", "LiFT: K sweep"))
    figures.append(
        plots.sweep(s_points, out / "sigma_sweep.png", "sigma = beta", "LiFT: sigma = beta sweep", log_x=True)
    )
    traces = chain_traces(results_dir)
    figures.append(plots.traces(traces, out / "traces.png"))
    figures = [f for f in figures if f is not None]
    text = _markdown(run, rows, ordered, reference, benchmark, figures, k_points, s_points, traces)
    from liftpeft.evaluation.html import markdown_to_html

    atomic_write_text(out / "report.html", markdown_to_html(text, out, title=f"{benchmark}: results"))
    return atomic_write_text(out / "report.md", text)


def _markdown(run, rows, ordered, reference, benchmark, figures, k_points, s_points, traces) -> str:
    metric = ordered[0].metric
    parts = [
        f"# {benchmark}: results",
        "",
        f"Split: meta-{run.get('split', 'test')} tasks · metric: **{metric}** (higher is better: "
        f"{rows[0].get('higher_is_better', True)}) · reference: **{reference}** · "
        f"liftpeft {run.get('liftpeft_version', '?')}",
    ]
    commands = run.get("commands") or ([run["command"]] if run.get("command") else [])
    if commands:
        label = "Command:" if len(commands) == 1 else "Commands (in the order they ran):"
        parts += ["", label, "", "```", *commands, "```"]
    chance = next((s.chance for s in ordered if s.chance is not None), None)
    if chance is not None:
        parts += ["", f"Chance level (mean over tasks of 1 / number of options): **{chance:.4f}**."]
    parts += [
        "",
        "## Methods",
        "",
        summary_table(ordered, reference),
        "",
        "Score of a seed = mean over test tasks; table = mean ± std (ddof 1) over seeds. p (tasks): paired "
        "t-test over tasks of per-task scores averaged over seeds; p (seeds): paired t-test over seeds. "
        f"MAD: mean over tasks of |{reference} − method|. Wins / losses: tasks where {reference} scores "
        "higher / lower. Times are wall-clock seconds on the machine that ran the benchmark.",
    ]
    for title, points, label in (
        ("K sweep", k_points, "K"),
        ("sigma = beta sweep", s_points, "sigma = beta"),
    ):
        if len(points) > 1:
            parts += ["", f"## {title}", "", f"| {label} | method | {metric} |", "|---|---|---|"]
            for x, s in sorted(points, key=lambda p: p[0]):
                parts.append(f"| {x:g} | {s.method} | {s.mean:.4f} ± {s.std:.4f} |")
    if traces:
        parts += [
            "",
            "## Sampler diagnostics",
            "",
            "Summary statistics of the kept phi samples (distance from the PEFT initialisation, projections "
            "on fixed random directions): effective sample size and split R-hat of each chain cut into 4 "
            "segments (R-hat near 1: no drift between segments).",
            "",
            diagnostics_table(traces),
        ]
    parts += ["", "## Figures", ""]
    parts += [f"![{f.stem}]({f.name})" for f in figures]
    per_task = defaultdict(dict)
    for s in ordered:
        for task, v in s.task_scores.items():
            per_task[task][s.method] = v
    names = [s.method for s in ordered]
    parts += [
        "",
        "## Per task (mean over seeds)",
        "",
        "| task | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for task in sorted(per_task):
        parts.append(f"| {task} | " + " | ".join(_fmt(per_task[task].get(n)) for n in names) + " |")
    return "\n".join(parts) + "\n"
