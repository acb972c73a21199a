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
from liftpeft.outputs import claim_output


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


def _configs(rows: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    configs: dict[str, dict[str, Any]] = {}
    bases: dict[str, str] = {}
    for row in rows:
        configs.setdefault(row["method"], row.get("config", {}))
        bases.setdefault(row["method"], row.get("base_method", row["method"]))
    return configs, bases


def _knob_points(
    rows: list[dict[str, Any]], anchor: str, free: set[str], knob: str, tie: str | None = None
) -> list[tuple[float, str]]:
    """(value of ``knob``, method) of the methods with ``anchor``'s base method whose configuration
    differs from ``anchor``'s only in the ``free`` fields (and, with ``tie``, has ``knob == tie``)."""
    configs, bases = _configs(rows)
    ref = configs.get(anchor)
    if ref is None:
        return []
    points = []
    for m, c in configs.items():
        if bases[m] != bases[anchor] or knob not in c:
            continue
        # fields only one side has (added by a later version) do not count as differences
        differs = {k for k in set(c) & set(ref) if c[k] != ref[k]}
        if differs <= free and (tie is None or c.get(knob) == c.get(tie)):
            points.append((float(c[knob]), m))
    return sorted(points)


def _sweeps(rows: list[dict[str, Any]], summaries: dict[str, MethodSummary], reference: str):
    """(K, summary) and (sigma, summary) points of the reference method's variants."""
    k_points = _knob_points(rows, reference, {"k", "extra_k"}, "k")
    s_points = _knob_points(rows, reference, {"sigma", "beta", "extra_k"}, "sigma", tie="beta")
    return [(x, summaries[m]) for x, m in k_points], [(x, summaries[m]) for x, m in s_points]


def read_costs(results_dir: Path) -> dict[str, dict[str, Any]]:
    """Rows of ``cost.jsonl`` (written by ``benchmarks/method_cost.py``) keyed by method."""
    path = results_dir / "cost.jsonl"
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {row["method"]: row for row in rows}


def _family(base: str) -> str:
    from liftpeft.methods.base import available_methods

    info = available_methods().get(base)
    return info.family if info is not None else "other"


def _mib(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _x(value: float | None) -> str:
    return "–" if value is None else f"×{value:.2f}"


def cost_table(costs: dict[str, dict[str, Any]]) -> str:
    union = (costs.get("union") or {}).get("meta_iteration_seconds")
    lines = [
        "| method | family | meta-train iteration | s / iteration | vs plain step | vs Union step "
        "| adapt s / step | vs plain step | peak MiB: meta-train | adapt | plain training |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in costs.items():
        meta = c.get("meta_iteration_seconds")
        vs_union = meta / union if meta is not None and union else None
        lines.append(
            f"| {name} | {c.get('family', '–')} | {c.get('unit') or 'none'} | "
            f"{_fmt(meta, 4)} | {_x(c.get('meta_ratio'))} | {_x(vs_union)} | "
            f"{_fmt(c.get('adapt_step_seconds'), 4)} | {_x(c.get('adapt_ratio'))} | "
            f"{_mib(c.get('meta_peak_increment_mib'))} | {_mib(c.get('adapt_peak_increment_mib'))} | "
            f"{_mib(c.get('plain_peak_increment_mib'))} |"
        )
    return "\n".join(lines)


def _cost_section(costs: dict[str, dict[str, Any]]) -> list[str]:
    if not costs:
        return []
    parts = [
        "",
        "## Cost per iteration",
        "",
        "Measured by `benchmarks/method_cost.py`, one fresh process per method: plain training is one "
        "AdamW step of No-Meta-Train's fine-tuning on one minibatch; a method's meta-training iteration and "
        "adaptation step are timed at two counts and differenced (set-up costs cancel); ratios are medians "
        "over repetitions interleaved with plain steps in the same process. The plain step trains on one test "
        "task; where tasks differ in length or number of options (BIG-bench) a step on the training tasks "
        "costs more, so *vs Union step* (Union-Train's step: plain training on the pooled training tasks, "
        "timed in its own process) is the like-for-like figure for meta-training. Peak memory: increment over "
        "what was in use before the call (resident set on a CPU, CUDA allocator on a GPU).",
    ]
    commands = list(dict.fromkeys(c["command"] for c in costs.values() if c.get("command")))
    machines = list(dict.fromkeys(c["machine"] for c in costs.values() if c.get("machine")))
    if commands:
        parts += ["", "```", *commands, "```"]
    if machines:
        parts += ["", f"Machine: {'; '.join(machines)}."]
    parts += ["", cost_table(costs)]
    thinned = sorted({(name, c["timed_thin"]) for name, c in costs.items() if c.get("timed_thin")})
    if thinned:
        parts += [
            "",
            "LiFT-family chains were timed with the online-EM mixture update every "
            + ", ".join(f"{t} (`{n}`)" for n, t in thinned)
            + " steps (a short timed chain must keep K samples); runs update it every `thin` steps, "
            "so their iterations cost at most this.",
        ]
    lift = costs.get("lift")
    if lift and lift.get("meta_peak_increment_mib") is not None:
        nd = lift["n_train_tasks"] * lift["dim"] * 4 / 2**20
        parts += [
            "",
            f"LiFT's sampler holds N = {lift['n_train_tasks']} task adapters of d = {lift['dim']} floats "
            f"(N d = {nd:.2f} MiB in fp32); its meta-training peak is "
            f"{lift['meta_peak_increment_mib']:.1f} MiB against {lift['plain_peak_increment_mib']:.1f} MiB for "
            "plain training on one test task"
            + (
                f" and {costs['union']['meta_peak_increment_mib']:.1f} MiB for Union-Train on the pooled "
                "training tasks (a prefix cache, where the backbone has one, fills during both)."
                if (costs.get("union") or {}).get("meta_peak_increment_mib") is not None
                else "."
            ),
        ]
    return parts


def _maml_section(rows, summaries: dict[str, MethodSummary], costs, metric: str) -> list[str]:
    """MAML's inner-step table: accuracy where the variants ran, time and memory where they were costed."""
    points = dict((m, x) for x, m in _knob_points(rows, "maml", {"inner_steps"}, "inner_steps"))
    costed = {
        m: c["settings"].get("inner_steps", 1)
        for m, c in costs.items()
        if c.get("base_method") == "maml" and isinstance(c.get("settings"), dict)
    }
    base_settings = costs.get("maml", {}).get("settings") or {}
    for m, steps in costed.items():
        other = {k: v for k, v in costs[m]["settings"].items() if k != "inner_steps"}
        if other == {k: v for k, v in base_settings.items() if k != "inner_steps"}:
            points.setdefault(m, float(steps))
    if len(points) < 2:
        return []
    parts = [
        "",
        "## MAML inner steps",
        "",
        f"| inner steps | method | {metric} | meta-train s / iteration | vs plain step | peak MiB (meta-train) |",
        "|---|---|---|---|---|---|",
    ]
    for m, x in sorted(points.items(), key=lambda item: item[1]):
        s, c = summaries.get(m), costs.get(m, {})
        score = f"{s.mean:.4f} ± {s.std:.4f}" if s is not None else "not run"
        parts.append(
            f"| {x:g} | {m} | {score} | {_fmt(c.get('meta_iteration_seconds'), 4)} | "
            f"{_x(c.get('meta_ratio'))} | {_mib(c.get('meta_peak_increment_mib'))} |"
        )
    return parts


def _family_section(ordered: list[MethodSummary], bases: dict[str, str], reference: str) -> list[str]:
    """The methods table again, one block per family, LiFT's ablations first."""
    groups: dict[str, list[MethodSummary]] = defaultdict(list)
    for s in ordered:
        groups[_family(bases.get(s.method, s.method))].append(s)
    if len(groups) < 3:
        return []
    order = ["LiFT", "LiFT ablation", "LiFT variant", "fine-tuning"]
    names = [g for g in order if g in groups] + sorted(g for g in groups if g not in order)
    parts = ["", "## Methods by family", ""]
    for g in names:
        parts += [f"### {g}", "", summary_table(groups[g], reference), ""]
    return parts[:-1]


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
    read_rows(results_dir)  # refuses a directory without results before anything is written
    if out is None or Path(out).resolve() == results_dir.resolve():
        out = claim_output(results_dir, "bench", resume=True).path
    else:  # a report of its own: regenerated in place, never over someone else's files
        out = claim_output(out, "report", overwrite=True).path
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
    _, bases = _configs(rows)
    costs = read_costs(results_dir)
    extra = [
        *_family_section(ordered, bases, reference),
        *_maml_section(rows, by_name, costs, ordered[0].metric),
        *_cost_section(costs),
    ]
    if extra:
        head, sep, tail = text.partition("\n## Figures\n")
        text = head.rstrip("\n") + "\n" + "\n".join(extra) + "\n" + sep + tail
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
