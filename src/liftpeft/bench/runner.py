"""The benchmark grid: methods x seeds on a benchmark, one JSON line per (method, seed, task).

``results.jsonl`` rows hold the metrics, the adaptation steps, wall times and the resolved method
configuration. Rows are appended as they finish and meta-trained states are saved under ``states/``,
so an interrupted run resumes where it stopped (finished rows are skipped).

A benchmark config (``configs/bench/<benchmark>.yaml``, or any YAML/TOML file) has::

    benchmark: shakespeare         # a registered benchmark
    settings: {...}                # passed to its builder (task sizes, backbone, PEFT config, ...)
    methods: {lift: {...}, ...}    # per-method settings, tuned on meta-dev tasks only
    variants:                      # named variants of a method, e.g. for sweeps
      lift-sb0.05: {method: lift, sigma: 0.05, beta: 0.05}
    default_methods: [lift, no-meta, union]
    reference: lift                # the method others are compared with
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from liftpeft import service
from liftpeft._version import __version__
from liftpeft.atomic import atomic_write_json
from liftpeft.bench.benchmarks import (
    BenchmarkData,
    available_benchmarks,
    build_benchmark,
    check_benchmark_settings,
)
from liftpeft.config_files import load_config_file
from liftpeft.methods.base import available_methods, build_method, scoring_objective
from liftpeft.outputs import claim_output
from liftpeft.progress import progress_bar, progress_line

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.jsonl"
RUN_FILE = "run.json"


def load_bench_config(benchmark_or_file: str | os.PathLike) -> dict[str, Any]:
    """A registered benchmark's shipped config, or a config file (YAML / TOML)."""
    path = Path(benchmark_or_file)
    if path.suffix in (".yaml", ".yml", ".toml"):
        config = load_config_file(path)
    elif str(benchmark_or_file) in available_benchmarks():
        shipped = resources.files("liftpeft") / "configs" / "bench" / f"{benchmark_or_file}.yaml"
        config = (
            load_config_file(Path(str(shipped)))
            if shipped.is_file()
            else {"benchmark": str(benchmark_or_file)}
        )
    else:
        raise KeyError(
            f"unknown benchmark {str(benchmark_or_file)!r}; available: {', '.join(available_benchmarks())} "
            "(or pass a .yaml / .toml config file)"
        )
    return complete_bench_config(config)


def compare_config(
    model: str | os.PathLike,
    tasks: str | os.PathLike,
    *,
    test_tasks: str | os.PathLike | None = None,
    config_file: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """The bench config of ``liftpeft compare``: the ``tasks`` benchmark on a user's task folders.

    ``config_file`` (YAML / TOML) may add ``methods:``, ``variants:``, ``defaults:`` and ``settings:``
    as in a bench config. A config of another benchmark lends only its method sections (``methods:``,
    ``variants:``, ``defaults:``, ``default_methods:``, ``reference:``).
    """
    config = load_config_file(Path(config_file)) if config_file else {}
    if config.get("benchmark", "tasks") != "tasks":
        # another benchmark's config: reuse its methods' settings, not its benchmark's settings
        config.pop("settings", None)
    config["benchmark"] = "tasks"
    settings = dict(config.get("settings") or {})
    settings.update(model=str(model), tasks=str(tasks))
    if test_tasks is not None:
        settings["test_tasks"] = str(test_tasks)
    config["settings"] = settings
    return complete_bench_config(config)


BENCH_CONFIG_KEYS = (
    "benchmark",
    "settings",
    "methods",
    "defaults",
    "variants",
    "reference",
    "default_methods",
)


def complete_bench_config(config: dict[str, Any]) -> dict[str, Any]:
    """Fill a bench config's optional sections with their defaults and validate it."""
    unknown = sorted(set(config) - set(BENCH_CONFIG_KEYS))
    if unknown:
        raise ValueError(
            f"the bench config has unknown section(s) {unknown}; valid: {list(BENCH_CONFIG_KEYS)}"
        )
    config.setdefault("settings", {})
    config.setdefault("methods", {})
    config.setdefault("defaults", {})
    config.setdefault("variants", {})
    config.setdefault("reference", "lift")
    config.setdefault("default_methods", ["lift", "no-meta", "union"])
    validate_bench_config(config)
    return config


def validate_bench_config(config: dict[str, Any]) -> None:
    """Check names and settings against the registries (raises ``ValueError`` saying what is wrong)."""
    if config.get("benchmark") not in available_benchmarks():
        raise ValueError(f"config names unknown benchmark {config.get('benchmark')!r}")
    check_benchmark_settings(config["benchmark"], config.get("settings") or {})
    registry = available_methods()
    for name in config["methods"]:
        if name not in registry:
            raise ValueError(f"config sets method {name!r}, which is not registered (see `liftpeft methods`)")
    known = {
        f.name
        for info in registry.values()
        if info.config_class
        for f in dataclasses.fields(info.config_class)
    }
    unknown = sorted(set(config.get("defaults") or {}) - known)
    if unknown:
        raise ValueError(
            f"`defaults:` sets {unknown}, which no registered method has (see `liftpeft methods`)"
        )
    for name, spec in config["variants"].items():
        if not isinstance(spec, dict) or spec.get("method") not in registry:
            raise ValueError(f"variant {name!r} needs `method:` naming a registered method")
    for name in [*config["default_methods"], *config["variants"]]:
        resolve_method(config, name)  # builds the config: unknown fields fail here


def _defaults_for(config: dict[str, Any], base: str) -> dict[str, Any]:
    """The config's ``defaults:`` that ``base``'s configuration has a field for (others are skipped)."""
    defaults = config.get("defaults") or {}
    config_class = available_methods()[base].config_class
    if not defaults or config_class is None:
        return {}
    fields = {f.name for f in dataclasses.fields(config_class)}
    return {key: value for key, value in defaults.items() if key in fields}


def resolve_method(config: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    """``(registry name, settings)`` of a method or variant named in a run.

    Settings are layered: the config's ``defaults:`` (only the fields the method has), then its
    ``methods:`` entry, then the variant's own settings.
    """
    if name in config["variants"]:
        spec = dict(config["variants"][name])
        base = spec.pop("method")
        settings = {**_defaults_for(config, base), **config["methods"].get(base, {}), **spec}
    elif name in available_methods():
        base = name
        settings = {**_defaults_for(config, base), **config["methods"].get(name, {})}
    else:
        raise KeyError(
            f"unknown method or variant {name!r}; methods: {', '.join(available_methods())}; "
            f"variants of this config: {', '.join(config['variants']) or 'none'}"
        )
    try:
        build_method(base, **settings)
    except (TypeError, ValueError) as err:
        raise ValueError(f"settings of {name!r} are invalid: {err}") from None
    return base, settings


# -- the grid -----------------------------------------------------------------------------------------
def _check_same_benchmark(out: Path, benchmark: str) -> None:
    """Refuse to mix two benchmarks' rows in one results directory."""
    if not (out / RUN_FILE).is_file():
        return
    try:
        previous = json.loads((out / RUN_FILE).read_text()).get("benchmark")
    except ValueError:
        raise ValueError(f"{out / RUN_FILE} is not valid JSON; give another --out directory") from None
    if previous not in (None, benchmark):
        raise ValueError(
            f"--out {out} holds results of benchmark {previous!r}, not {benchmark!r}; "
            "give another --out directory"
        )


def _done(results: Path) -> set[tuple[str, int, str, str]]:
    if not results.is_file():
        return set()
    done = set()
    for line in results.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            done.add((row["method"], row["seed"], row["split"], row["task"]))
    return done


def run_bench(
    config: dict[str, Any],
    methods: list[str] | None,
    seeds: list[int],
    out: str | os.PathLike,
    split: str = "test",
    data: BenchmarkData | None = None,
    command: str | None = None,
) -> Path:
    """Run every (method, seed) on the benchmark's ``split`` tasks; returns the results file.

    ``out`` must be new, empty or this benchmark's results directory (rerunning continues it);
    another benchmark's results or a foreign non-empty directory is refused untouched.
    """
    if not seeds:
        raise ValueError("no seeds to run; give --seeds N with N >= 1")
    if any(int(s) < 0 for s in seeds):
        raise ValueError(f"seeds must be >= 0, got {list(seeds)}")
    out = Path(out)
    claim_output(out, "bench", resume=True, check_only=True)
    _check_same_benchmark(out, config["benchmark"])
    methods = list(methods or config["default_methods"])
    resolved = {name: resolve_method(config, name) for name in methods}
    data = data or build_benchmark(config["benchmark"], config["settings"])
    tasks = data.tasks(split)
    out = claim_output(out, "bench", resume=True).path
    atomic_write_json(
        out / RUN_FILE,
        {
            "commands": _command_history(out / RUN_FILE, command),
            "liftpeft_version": __version__,
            "benchmark": config["benchmark"],
            "split": split,
            "seeds": seeds,
            "methods": methods,
            "config": config,
            "info": data.info,
            "reference": config["reference"],
            "command": command,
        },
    )
    results = out / RESULTS_FILE
    done = _done(results)
    grid = [(name, seed) for name in methods for seed in seeds]
    bar = progress_bar(total=len(grid) * len(tasks), desc=f"bench {config['benchmark']}", unit="task")
    bar.update(sum(1 for name, seed in grid for t in tasks if (name, seed, split, t.name) in done))
    started = time.monotonic()
    try:
        for cell, (name, seed) in enumerate(grid, start=1):
            base, settings = resolved[name]
            method = build_method(base, **settings)
            variants = _variant_names(name, method, base)
            pending = [t for t in tasks if any((v, seed, split, t.name) not in done for v in variants)]
            if not pending:
                continue
            where = f"bench {config['benchmark']} [{cell}/{len(grid)}] {name} seed {seed}"
            progress_line(f"{where}: meta-training, then {len(pending)} {split} tasks")
            state, meta_seconds = _meta_trained(
                method, data, out / "states" / _state_key(base, method, seed), seed, base
            )
            for variant, variant_state in _variant_states(name, state, base).items():
                for task in pending:
                    if (variant, seed, split, task.name) in done:
                        continue
                    row = _run_task(method, variant_state, task, seed)
                    row.update(
                        benchmark=config["benchmark"],
                        method=variant,
                        base_method=base,
                        seed=seed,
                        split=split,
                        meta_train_seconds=meta_seconds,
                        config=_config_of(method, variant_state, base),
                    )
                    with results.open("a") as handle:
                        handle.write(json.dumps(row) + "\n")
                    done.add((variant, seed, split, task.name))
                    if variant == name:
                        bar.update(1)
            progress_line(
                f"{where}: done (meta-train {meta_seconds:.0f} s; {time.monotonic() - started:.0f} s "
                "since this run started)"
            )
    finally:
        bar.close()
    return results


def _command_history(run_file: Path, command: str | None) -> list[str]:
    """Every distinct command that wrote into this results directory, oldest first (a run that adds
    methods or seeds to an existing directory keeps the commands that made the earlier rows)."""
    history: list[str] = []
    if run_file.is_file():
        try:
            previous = json.loads(run_file.read_text())
        except (OSError, ValueError):
            previous = {}
        history = list(previous.get("commands") or ([previous["command"]] if previous.get("command") else []))
    if command and command not in history:
        history.append(command)
    return history


def _state_key(base: str, method: Any, seed: int) -> str:
    """Folder name of a meta-trained state: variants differing only in the settings the method
    declares test-time (``test_time_fields``) share it, so a sweep over them meta-trains once."""
    cfg = getattr(method, "config", None)
    test_time = set(available_methods()[base].test_time_fields)
    meta = {
        k: v
        for k, v in (dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else {}).items()
        if k not in test_time
    }
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{base}-{digest}-seed{seed}"


def _variant_names(name: str, method: Any, base: str) -> list[str]:
    variants = available_methods()[base].variants
    extra = variants.names(getattr(method, "config", None)) if variants is not None else []
    return [name, *(f"{name}-{suffix}" for suffix in extra)]


def _variant_states(name: str, state: Any, base: str) -> dict[str, Any]:
    out = {name: state}
    variants = available_methods()[base].variants
    if variants is not None:
        out.update({f"{name}-{suffix}": s for suffix, s in variants.states(state).items()})
    return out


def _meta_trained(method: Any, data: BenchmarkData, folder: Path, seed: int, base: str) -> tuple[Any, float]:
    """The meta-trained state in ``folder`` (meta-trained through the run service if not there yet;
    a killed run continues from its checkpoint)."""
    trained = service.meta_train(
        base,
        service.settings_of(method),
        data.problem,
        folder,
        seed=seed,
        resume=True,
        backbone_settings=data.info.get("backbone_settings"),
        extra={"benchmark": data.name},
    )
    return trained.state, trained.seconds


def _run_task(method: Any, state: Any, task: Any, seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    start = time.perf_counter()
    samples = method.adapt(state, task, seed)
    adapt_seconds = time.perf_counter() - start
    metrics = scoring_objective(method, task).evaluate(samples, "test")
    cfg = getattr(method, "config", None)
    steps = getattr(cfg, "adapt_steps", None)
    return {
        "task": task.name,
        "metrics": metrics,
        "primary_metric": task.primary_metric,
        "higher_is_better": task.higher_is_better,
        "adapt_steps": steps,
        "adapt_seconds": adapt_seconds,
        "n_train": task.n_examples("train"),
        "n_samples": int(samples.shape[0]),
    }


def _config_of(method: Any, state: Any, base: str) -> dict[str, Any]:
    cfg = getattr(method, "config", None)
    out = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else {}
    variants = available_methods()[base].variants
    if variants is not None:
        out.update(variants.row_settings(state))
    return out
