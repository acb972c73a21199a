"""Command handlers: merge config file and flags, call the library, print results. No logic here."""

from __future__ import annotations

import argparse
import errno
import json
from pathlib import Path
from typing import Any

from liftpeft.config_files import load_config_file, parse_assignments


class UsageError(ValueError):
    """A missing or contradictory command-line argument (exit code 2)."""


_OS_ADVICE = {
    errno.ENOSPC: "free some disk space and rerun",
    errno.EDQUOT: "free some disk space and rerun",
    errno.EACCES: "check that you may write there, or choose another path",
    errno.EPERM: "check that you may write there, or choose another path",
    errno.EROFS: "that file system is read-only; choose another path",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "check the path",
    errno.EISDIR: "give a file path, not a directory",
}


def _user_path(filename: Any) -> str:
    """The path a user gave, not liftpeft's temporary beside it (``.name.xyz.tmp``, build folders)."""
    path = Path(str(filename))
    for i, part in enumerate(path.parts):
        if part.startswith(".liftpeft-build-") or (part.startswith(".") and part.endswith(".tmp")):
            return str(Path(*path.parts[:i]) if i else Path("."))
    return str(path)


def describe_error(err: BaseException) -> str:
    """One line for the user; an OS error names the user's path (never a temporary) and what to do."""
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        advice = _OS_ADVICE.get(err.errno or 0, "check the path and rerun")
        return f"{_user_path(err.filename)}: {err.strerror.lower()}; {advice}"
    text = str(err).strip() or type(err).__name__
    if isinstance(err, KeyError) and text.startswith(("'", '"')):
        text = text[1:-1]
    return text.splitlines()[0] if len(text.splitlines()) == 1 else " ".join(text.split())


def _settings(
    args: argparse.Namespace,
    flags: tuple[str, ...],
    required: tuple[str, ...],
    positional: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Config file values, overridden by ``--set`` pairs, overridden by explicit flags."""
    merged: dict[str, Any] = load_config_file(args.config) if args.config else {}
    merged.update(parse_assignments(getattr(args, "set", None)))
    for name in flags:
        value = getattr(args, name, None)
        # None: flag not given; False: a store_true flag left off (``0 == False``, so no ``in`` test)
        if value is not None and value is not False:
            merged[name] = value
    missing = [
        n.upper() if n in positional else f"--{n.replace('_', '-')}"
        for n in required
        if merged.get(n) in (None, "")
    ]
    if missing:
        raise UsageError(f"missing {', '.join(missing)} (give it as a flag or in --config)")
    return merged


def demo(args: argparse.Namespace) -> int:
    from liftpeft import demo as demo_job
    from liftpeft.progress import set_quiet

    set_quiet(args.quiet)
    demo_job.run(print)
    return 0


def example(args: argparse.Namespace) -> int:
    from liftpeft import api
    from liftpeft.example import tour_commands

    s = _settings(args, ("out", "overwrite"), ("out",))
    out = api.example(s["out"], overwrite=bool(s.get("overwrite", False)))
    print(f"example written to {out}: model/ (tiny BERT), tasks/{{train,test}}/, bench.yaml, EXAMPLE.md")
    print(f"next: {tour_commands(str(out))[0]}")
    print(f"      (every command of the tour: {out}/EXAMPLE.md)")
    return 0


def bench(args: argparse.Namespace) -> int:
    from liftpeft.bench import load_bench_config
    from liftpeft.evaluation.report import write_report
    from liftpeft.progress import set_quiet

    set_quiet(args.quiet)
    if args.merge:
        from liftpeft.bench.merge import merge_results

        if not args.out:
            raise UsageError("--merge needs --out (the directory that receives the merged results)")
        added = merge_results(args.merge, args.out)
        print(
            f"merged {added['rows']} rows and {added['states']} states into {args.out} ({added['total_rows']} rows)"
        )
        print(f"report:  {write_report(args.out)}")
        return 0
    if not args.benchmark and not args.config:
        raise UsageError("missing --benchmark (or a --config file naming one)")
    config = load_bench_config(args.config or args.benchmark)
    if args.benchmark and args.config and config["benchmark"] != args.benchmark:
        raise UsageError(f"--config is for benchmark {config['benchmark']!r}, not {args.benchmark!r}")
    return _run_grid(config, args)


def compare(args: argparse.Namespace) -> int:
    from liftpeft.bench.runner import compare_config
    from liftpeft.progress import set_quiet

    set_quiet(args.quiet)
    missing = [f"--{n}" for n in ("model", "tasks") if not getattr(args, n)]
    if missing:
        raise UsageError(f"missing {', '.join(missing)}")
    config = compare_config(args.model, args.tasks, test_tasks=args.test_tasks, config_file=args.config)
    return _run_grid(config, args)


def _run_grid(config: dict[str, Any], args: argparse.Namespace) -> int:
    """bench / compare: methods x seeds on the configured tasks, then the report."""
    from liftpeft.bench import run_bench
    from liftpeft.bench.runner import validate_bench_config
    from liftpeft.evaluation.report import write_report

    config["settings"].update(parse_assignments(args.set))
    validate_bench_config(config)  # a --set typo is refused here, before anything runs
    if not args.out:
        raise UsageError("missing --out (the results directory)")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    if args.first_seed < 0:
        raise UsageError(f"--first-seed must be >= 0, got {args.first_seed}")
    first = args.first_seed
    seeds = list(range(first, first + (args.seeds if args.seeds is not None else 3)))
    results = run_bench(
        config,
        methods,
        seeds,
        args.out,
        split=args.split or "test",
        command=" ".join(["liftpeft", *args.argv]),
    )
    report = write_report(results.parent)
    print(f"results: {results}\nreport:  {report}")
    return 0


def report(args: argparse.Namespace) -> int:
    from liftpeft.evaluation.report import write_report

    s = _settings(args, ("results", "out"), ("results",), positional=("results",))
    print(f"report written to {write_report(s['results'], s.get('out'))}")
    return 0


def data(args: argparse.Namespace) -> int:
    if args.dataset == "vision":
        from liftpeft.data.vision import fetch_vision, lite0_weights

        for images in fetch_vision():
            print(
                f"vision: {images.name} cached ({len(images.labels)} images of {len(images.classes)} classes)"
            )
        print(f"vision: EfficientNet-Lite0 weights {lite0_weights()}")
        return 0
    if args.dataset == "smollm2":
        from liftpeft.bench.models import smollm2_path

        print(f"smollm2: model converted to safetensors in {smollm2_path()}")
        return 0
    if args.dataset == "bigbench-gen":
        from liftpeft.bench.runner import load_bench_config
        from liftpeft.data.bigbench import fetch_bigbench
        from liftpeft.data.bigbench_gen import load_bigbench_gen

        path = fetch_bigbench()
        splits = load_bigbench_gen(load_bench_config("bigbench-gen")["settings"].get("data"))
    elif args.dataset == "shakespeare":
        from liftpeft.data.shakespeare import fetch_shakespeare, load_shakespeare

        path = fetch_shakespeare()
        splits = load_shakespeare()
    else:
        from liftpeft.data.bigbench import fetch_bigbench, load_bigbench_cls

        path = fetch_bigbench()
        splits = load_bigbench_cls()
    counts = ", ".join(f"{len(v)} {k}" for k, v in splits.items())
    print(f"{args.dataset}: source {path}; tasks cached ({counts})")
    return 0


def meta_train(args: argparse.Namespace) -> int:
    from liftpeft import api
    from liftpeft.scale.comm import is_main_process

    s = _settings(
        args,
        (
            "model",
            "tasks",
            "out",
            "method",
            "k",
            "steps",
            "seed",
            "resume",
            "checkpoint_every",
            "overwrite",
            "tensorboard",
        ),
        ("model", "tasks", "out"),
    )
    model, tasks, out = s.pop("model"), s.pop("tasks"), s.pop("out")
    trained = api.meta_train(model, tasks, out, quiet=args.quiet, **s)
    if not is_main_process():  # torchrun: rank 0 reports
        return 0
    print(
        f"{trained.method} meta-trained in {trained.seconds:.1f} s; {_state_summary(trained.state)}saved to {out}"
    )
    return 0


def _state_summary(state: Any) -> str:
    from liftpeft.learned_prior import LearnedPrior

    if isinstance(state, LearnedPrior):
        return (
            f"prior with {state.n_components} components over {state.dim} adapter parameters "
            f"({len(state.task_names)} tasks) "
        )
    return ""


def zoo_prior(args: argparse.Namespace) -> int:
    from liftpeft import api

    s = _settings(
        args, ("adapters", "out", "k", "beta", "sigma", "seed", "model", "overwrite"), ("adapters", "out")
    )
    adapters, out = s.pop("adapters"), s.pop("out")
    prior = api.zoo_prior([adapters] if isinstance(adapters, str) else adapters, out, quiet=args.quiet, **s)
    print(
        f"prior with {prior.n_components} components over {prior.dim} adapter parameters "
        f"({len(prior.task_names)} adapters) saved to {out}"
    )
    return 0


def adapt(args: argparse.Namespace) -> int:
    from liftpeft import api

    s = _settings(
        args,
        ("prior", "task", "out", "model", "steps", "seed", "overwrite", "revision"),
        ("prior", "task", "out"),
    )
    outcome = api.adapt(s.pop("prior"), s.pop("task"), s.pop("out"), quiet=args.quiet, **s)
    print(f"adapter written to {outcome.adapter_dir}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from liftpeft import api

    s = _settings(args, ("model", "adapter", "task", "split"), ("model", "task"))
    metrics = api.evaluate(
        s.pop("model"), s.pop("task"), adapter=s.pop("adapter", None), split=s.pop("split", "test"), **s
    )
    if args.json:
        print(json.dumps(metrics, sort_keys=True))
    else:
        for key, value in metrics.items():
            print(f"{key:>16}: {value:.4f}")
    return 0


def info(args: argparse.Namespace) -> int:
    from liftpeft import api

    s = _settings(args, ("path", "revision"), ("path",), positional=("path",))
    details = api.info(s["path"], revision=s.get("revision"))
    if args.json:
        print(json.dumps(details, indent=2, sort_keys=True, default=str))
        return 0
    for key, value in details.items():
        if isinstance(value, dict) and key == "settings":
            value = ", ".join(f"{k}={v}" for k, v in sorted(value.items()) if not isinstance(v, (list, dict)))
        print(f"{key:>18}: {value}")
    return 0


def _named_source(text: str) -> str | tuple[str, str]:
    """``NAME=SOURCE`` -> ``(NAME, SOURCE)``; a plain source stays as it is."""
    name, sep, source = text.partition("=")
    return (name, source) if sep and name and "/" not in name else text


def _csv(value: Any) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if str(v).strip()]


def tasks_from_datasets(args: argparse.Namespace) -> int:
    from liftpeft import api

    names = ("input", "label", "options", "choices", "target", "text", "task_column", "keep_tasks")
    names += ("train_size", "dev_size", "max_examples", "streaming", "shuffle_seed", "subset")
    names += ("revision", "cache_dir", "out", "overwrite", "sources", "splits")
    s = _settings(args, names, ("out",))
    if not s.get("sources"):
        raise UsageError("missing SOURCE (a save_to_disk directory, a data file or directory, or a hub id)")
    if s.get("dev_size") is not None and s.get("train_size") is None:
        raise UsageError("--dev-size needs --train-size (both carve the source's train rows)")
    sources = [_named_source(str(x)) for x in _csv(s.pop("sources"))]
    for key in ("choices", "keep_tasks"):
        s[key] = _csv(s.get(key))
    s["dev_size"] = s.get("dev_size") or 0
    if isinstance(s.get("splits"), str):
        pairs = [p.partition("=") for p in _csv(s["splits"])]
        if any(not sep or not a or not b for a, sep, b in pairs):
            raise UsageError(f"--splits expects SOURCE=TASK_SPLIT pairs, got {s['splits']!r}")
        s["splits"] = {a.strip(): b.strip() for a, _, b in pairs}
    out = api.tasks_from_datasets(sources, s.pop("out"), **{k: v for k, v in s.items() if v is not None})
    from liftpeft.tasks import read_task_collection

    tasks = read_task_collection(out)
    counts = ", ".join(f"{t.name} ({len(t.train)}/{len(t.dev)}/{len(t.test)})" for t in tasks[:5])
    more = f", ... {len(tasks) - 5} more" if len(tasks) > 5 else ""
    print(f"{len(tasks)} {tasks[0].kind} task(s) written to {out}: {counts}{more} (train/dev/test)")
    print(f"next: liftpeft meta-train --model MODEL --tasks {out} --out prior")
    return 0


def push_prior(args: argparse.Namespace) -> int:
    from liftpeft import api

    flags = ("path", "repo_id", "private", "revision", "create_pr", "commit_message", "base_model")
    s = _settings(args, flags, ("path", "repo_id"), positional=("path", "repo_id"))
    commit = api.push_prior(s.pop("path"), s.pop("repo_id"), **s)
    print(f"prior pushed: {getattr(commit, 'commit_url', None) or commit}")
    return 0


def methods(args: argparse.Namespace) -> int:
    from liftpeft.methods import available_methods

    registry = available_methods()
    width = max(len(name) for name in registry)
    for name, info in registry.items():
        print(f"{name:<{width}}  {info.description}")
    return 0
