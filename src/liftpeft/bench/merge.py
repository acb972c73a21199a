"""Merge results directories of one benchmark (a grid split over processes or machines) into one.

``merge_results(sources, out)`` adds to ``out`` every row of each source whose (method, seed,
split, task) ``out`` does not have yet, copies meta-trained states ``out`` lacks, merges the cost
tables (``cost.jsonl`` of ``benchmarks/method_cost.py``; a method ``out`` has keeps its row) and
appends the sources' commands to ``out``'s command history, so the merged directory reports and
resumes like one run. Sources of another benchmark or split are refused. ``out``'s files are
rewritten atomically.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from liftpeft.atomic import atomic_write_json, atomic_write_text
from liftpeft.bench.runner import RESULTS_FILE, RUN_FILE
from liftpeft.evaluation.stats import read_rows
from liftpeft.outputs import claim_output

COST_FILE = "cost.jsonl"  # the cost table beside the results (evaluation.report.read_costs)


def _cost_lines(folder: Path) -> dict[str, str]:
    path = folder / COST_FILE
    lines = path.read_text().splitlines() if path.is_file() else []
    return {json.loads(line)["method"]: line for line in lines if line.strip()}


def _key(row: dict) -> tuple:
    return row["method"], row["seed"], row["split"], row["task"]


def _run(folder: Path) -> dict:
    path = folder / RUN_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def merge_results(sources: list[str | os.PathLike], out: str | os.PathLike) -> dict[str, int]:
    """Merge ``sources`` into ``out``; returns how many rows and states were added."""
    out = Path(out)
    folders = [Path(s) for s in sources]
    for folder in folders:
        if not (folder / RESULTS_FILE).is_file():
            raise FileNotFoundError(
                f"{folder} has no {RESULTS_FILE}; pass directories written by `liftpeft bench`"
            )
    out = claim_output(out, "bench", resume=True).path
    rows = read_rows(out) if (out / RESULTS_FILE).is_file() else []
    run = _run(out)
    seen = {_key(r) for r in rows}
    identity = (run.get("benchmark"), run.get("split")) if run else None
    added_rows = added_states = 0
    costs = _cost_lines(out)
    for folder in folders:
        for method, line in _cost_lines(folder).items():
            costs.setdefault(method, line)
        source_run = _run(folder)
        source_identity = (source_run.get("benchmark"), source_run.get("split"))
        if identity is None:
            identity = source_identity
            run = dict(source_run, commands=[])
        elif source_identity != identity:
            raise ValueError(
                f"{folder} holds {source_identity[0]!r} / {source_identity[1]!r} results, {out} holds "
                f"{identity[0]!r} / {identity[1]!r}: merge runs of one benchmark and split only"
            )
        for row in read_rows(folder):
            if _key(row) not in seen:
                rows.append(row)
                seen.add(_key(row))
                added_rows += 1
        commands = list(run.get("commands") or [])
        for command in source_run.get("commands") or (
            [source_run["command"]] if source_run.get("command") else []
        ):
            if command not in commands:
                commands.append(command)
        run["commands"] = commands
        states = folder / "states"
        for state in sorted(states.iterdir()) if states.is_dir() else []:
            target = out / "states" / state.name
            if state.is_dir() and not target.exists():
                tmp = target.with_name(target.name + ".tmp")
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.copytree(state, tmp)
                os.replace(tmp, target)
                added_states += 1
    run["seeds"] = sorted({r["seed"] for r in rows})
    run["methods"] = list(dict.fromkeys(r["method"] for r in rows))
    atomic_write_text(out / RESULTS_FILE, "".join(json.dumps(r) + "\n" for r in rows))
    if costs:
        atomic_write_text(out / COST_FILE, "".join(line + "\n" for line in costs.values()))
    atomic_write_json(out / RUN_FILE, run)
    return {"rows": added_rows, "states": added_states, "total_rows": len(rows)}
