"""Command handlers: merge config file and flags, call the library, print results. No logic here."""

from __future__ import annotations

import argparse
import json
from typing import Any

from liftpeft.config_files import load_config_file, parse_assignments


class UsageError(ValueError):
    """A missing or contradictory command-line argument (exit code 2)."""


def describe_error(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    if isinstance(err, KeyError) and text.startswith(("'", '"')):
        text = text[1:-1]
    return text.splitlines()[0] if len(text.splitlines()) == 1 else " ".join(text.split())


def _settings(args: argparse.Namespace, flags: tuple[str, ...], required: tuple[str, ...]) -> dict[str, Any]:
    """Config file values, overridden by ``--set`` pairs, overridden by explicit flags."""
    merged: dict[str, Any] = load_config_file(args.config) if args.config else {}
    merged.update(parse_assignments(getattr(args, "set", None)))
    for name in flags:
        value = getattr(args, name, None)
        if value not in (None, False):
            merged[name] = value
    missing = [f"--{n.replace('_', '-')}" for n in required if merged.get(n) in (None, "")]
    if missing:
        raise UsageError(f"missing {', '.join(missing)} (give it as a flag or in --config)")
    return merged


def demo(args: argparse.Namespace) -> int:
    print("liftpeft demo: the end-to-end demo arrives with the benchmarks (issue 4).")
    return 0


def meta_train(args: argparse.Namespace) -> int:
    from liftpeft import api

    s = _settings(args, ("model", "tasks", "out", "k", "steps", "seed", "resume"), ("model", "tasks", "out"))
    model, tasks, out = s.pop("model"), s.pop("tasks"), s.pop("out")
    prior = api.meta_train(model, tasks, out, quiet=args.quiet, **s)
    print(
        f"prior with {prior.n_components} components over {prior.dim} adapter parameters "
        f"({len(prior.task_names)} tasks) saved to {out}"
    )
    return 0


def zoo_prior(args: argparse.Namespace) -> int:
    from liftpeft import api

    s = _settings(args, ("adapters", "out", "k", "beta", "sigma", "seed", "model"), ("adapters", "out"))
    adapters, out = s.pop("adapters"), s.pop("out")
    prior = api.zoo_prior([adapters] if isinstance(adapters, str) else adapters, out, quiet=args.quiet, **s)
    print(
        f"prior with {prior.n_components} components over {prior.dim} adapter parameters "
        f"({len(prior.task_names)} adapters) saved to {out}"
    )
    return 0


def adapt(args: argparse.Namespace) -> int:
    from liftpeft import api

    s = _settings(args, ("prior", "task", "out", "model", "steps", "seed"), ("prior", "task", "out"))
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


def methods(args: argparse.Namespace) -> int:
    from liftpeft.methods import available_methods

    registry = available_methods()
    width = max(len(name) for name in registry)
    for name, info in registry.items():
        print(f"{name:<{width}}  {info.description}")
    return 0
