"""The run service: meta-train, save, load and adapt any registered method, one way for everyone.

``api`` (and through it the CLI) and ``bench`` call these functions; none of them trains a method
on its own. The service sits above ``methods`` and below its callers: it never builds a backbone
(callers hand it a ``MetaProblem`` and task objectives), so it runs as well on synthetic problems.

A meta-trained artefact is one directory format for every method:

- the method's state, written by ``methods.state_io`` (safetensors + JSON; a LiFT prior keeps its
  ``prior.json`` / ``prior.safetensors`` format, so older readers still load it);
- ``method.json``: ``format`` (versioned), the method's registry name, its resolved settings, the
  seed, the backbone description and backbone settings (``max_length``, ...), meta-training
  seconds and the liftpeft version;
- ``run/``: the checkpoints of a method that resumes mid-run (``resumable_mid_run``).

The state and ``method.json`` are published together once meta-training has finished
(``OutputDir.build``); a killed run leaves only ``run/``, from which ``resume=True`` continues.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from liftpeft._version import __version__
from liftpeft.atomic import atomic_write_json
from liftpeft.learned_prior import META_FILE, LearnedPrior
from liftpeft.methods.base import MetaProblem, RunContext, available_methods, build_method
from liftpeft.methods.state_io import load_state, save_state
from liftpeft.objective import TaskObjective
from liftpeft.outputs import OutputError, claim_output
from liftpeft.scale.comm import from_environment

ARTEFACT_FILE = "method.json"
ARTEFACT_FORMAT = "liftpeft-meta-trained"
ARTEFACT_VERSION = 1
RUN_DIR = "run"
_LEGACY_SECONDS = "meta_train_seconds.json"  # bench states written before method.json existed


class ArtefactError(ValueError):
    """A directory that holds no usable meta-trained artefact."""


@dataclass
class MetaTrained:
    """A meta-trained method: what ``meta_train`` returns and ``load`` reads back."""

    method: str
    settings: dict[str, Any]
    state: Any
    seed: int = 0
    seconds: float = 0.0
    backbone: dict[str, Any] = field(default_factory=dict)
    backbone_settings: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def build(self, **test_time: Any) -> Any:
        """The method object, with test-time overrides (only settings it declares test-time)."""
        return build_method(self.method, **{**self.settings, **check_test_time(self.method, test_time)})


def settings_of(method: Any) -> dict[str, Any]:
    """A method's resolved settings (its config dataclass as a dict; ``{}`` when it has none)."""
    cfg = getattr(method, "config", None)
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else {}


def check_test_time(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` without ``None`` values; raises if one is not a test-time setting of ``name``."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    allowed = set(available_methods()[name].test_time_fields)
    fixed = sorted(set(overrides) - allowed)
    if fixed:
        hint = " (to widen the prior use adapt_beta_scale)" if "beta" in fixed else ""
        raise ValueError(
            f"adapt takes only test-time settings, and {fixed} are fixed by the meta-trained {name} "
            f"state{hint}; valid: {sorted(allowed)}"
        )
    return overrides


def meta_train(
    name: str,
    settings: dict[str, Any],
    problem: MetaProblem,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    resume: bool = False,
    overwrite: bool = False,
    checkpoint_every: int | None = None,
    on_log: Callable[[dict[str, Any]], None] | None = None,
    backbone_settings: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> MetaTrained:
    """Meta-train method ``name`` with ``settings`` on ``problem`` and save the artefact in ``out``.

    ``resume``: an artefact already complete in ``out`` (same method, settings and seed) is loaded
    instead of retrained; a killed run continues from its checkpoint in ``out/run`` (methods that
    resume mid-run) or restarts from scratch (the others; meta-training is deterministic given the
    seed, so the result is the same). ``overwrite`` replaces an artefact there (only its own files).
    ``extra``: JSON-able facts recorded in ``method.json`` (the command, the task folder, ...).
    """
    method = build_method(name, **settings)
    info = available_methods()[name]
    resolved = settings_of(method)
    comm = from_environment()  # torchrun: rank 0 owns the output directory, every rank trains
    if comm.world_size > 1 and not info.shards_tasks:
        raise ValueError(
            f"method {name!r} does not run on several ranks (only {sorted(m for m, i in available_methods().items() if i.shards_tasks)} "
            "do); launch it without torchrun"
        )
    target, refused = None, 0
    if comm.rank == 0:
        try:
            target = claim_output(out, "prior", overwrite=overwrite, resume=resume, can_resume=True)
        except OutputError:
            refused = 1
            if comm.world_size == 1:
                raise
    if comm.all_reduce_max(refused):
        if comm.rank == 0:
            raise OutputError(f"--out {out} was refused (see the message above); nothing was written")
        raise OutputError("rank 0 refused the output directory (its message says why); nothing was written")
    path = target.path if target is not None else Path(out)
    if resume:
        done = _load_if_same(path, name, resolved, seed) if comm.rank == 0 else None
        if comm.all_reduce_max(int(done is not None)):
            return done if done is not None else load(path, name)
    torch.manual_seed(seed)
    start = time.perf_counter()
    if info.resumable_mid_run:
        run = RunContext(path / RUN_DIR, resume=resume, checkpoint_every=checkpoint_every, on_log=on_log)
        state = method.meta_train(problem, seed, run=run)
    else:
        state = method.meta_train(problem, seed)
    seconds = time.perf_counter() - start
    result = MetaTrained(
        name,
        resolved,
        state,
        seed=seed,
        seconds=seconds,
        backbone=dict(problem.description),
        backbone_settings=dict(backbone_settings or {}),
        path=path,
    )
    if target is None:  # ranks other than 0: rank 0 publishes the artefact
        return result
    with target.build() as tmp:
        save_state(tmp, state)
        atomic_write_json(tmp / ARTEFACT_FILE, _artefact_record(result, extra))
    return result


def _artefact_record(result: MetaTrained, extra: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "format": ARTEFACT_FORMAT,
        "format_version": ARTEFACT_VERSION,
        "method": result.method,
        "settings": result.settings,
        "seed": result.seed,
        "meta_train_seconds": result.seconds,
        "backbone": result.backbone,
        "backbone_settings": result.backbone_settings,
        "liftpeft_version": __version__,
        **(extra or {}),
    }


def _load_if_same(folder: Path, name: str, settings: dict[str, Any], seed: int) -> MetaTrained | None:
    if not (folder / ARTEFACT_FILE).is_file() and not (folder / _LEGACY_SECONDS).is_file():
        return None
    try:
        done = load(folder, method=name)
    except ArtefactError:
        return None  # torn or partial: train again (a resumable run continues from run/)
    legacy = not done.settings  # a bench state from before method.json: its folder name is the key
    test_time = set(available_methods()[name].test_time_fields)  # variants that share one state

    def meta(values: dict[str, Any]) -> Any:
        return _jsonable({k: v for k, v in values.items() if k not in test_time})

    if done.method != name or (not legacy and (done.seed != seed or meta(done.settings) != meta(settings))):
        raise ArtefactError(
            f"{folder} holds {done.method} meta-trained with other settings or seed; "
            "pass --overwrite to replace it, or the original settings to continue it"
        )
    return done


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def load(path: str | os.PathLike, method: str | None = None) -> MetaTrained:
    """The meta-trained artefact in ``path``: written by ``meta_train``, by ``zoo-prior``, or a LiFT
    prior of an older liftpeft (``prior.json`` only). ``method`` names the method of a bare state
    folder that has no ``method.json`` (bench states written before it existed)."""
    path = Path(path)
    record_file = path / ARTEFACT_FILE
    if record_file.is_file():
        try:
            record = json.loads(record_file.read_text())
        except ValueError:
            raise ArtefactError(
                f"{record_file} is not valid JSON; meta-train again into a new --out"
            ) from None
        if record.get("format") != ARTEFACT_FORMAT or int(record.get("format_version", 0)) > ARTEFACT_VERSION:
            raise ArtefactError(
                f"{record_file} has format {record.get('format')!r} v{record.get('format_version')}, "
                f"which this liftpeft {__version__} cannot read; upgrade liftpeft"
            )
        name = record["method"]
        registry = available_methods()
        if name not in registry:
            raise ArtefactError(f"{path} holds method {name!r}, which this liftpeft does not have")
        state = load_state(path, registry[name].state_types)
        if state is None:
            raise ArtefactError(f"{path} holds no complete {name} state (an interrupted write?)")
        return MetaTrained(
            name,
            dict(record.get("settings") or {}),
            state,
            seed=int(record.get("seed", 0)),
            seconds=float(record.get("meta_train_seconds", 0.0)),
            backbone=dict(record.get("backbone") or {}),
            backbone_settings=dict(record.get("backbone_settings") or {}),
            path=path,
        )
    if method is not None and (path / _LEGACY_SECONDS).is_file():
        state = load_state(path, available_methods()[method].state_types)
        if state is not None:
            seconds = json.loads((path / _LEGACY_SECONDS).read_text())["seconds"]
            return MetaTrained(method, {}, state, seconds=float(seconds), path=path)
    if (path / META_FILE).is_file():
        prior = LearnedPrior.load(path)
        return from_prior(prior, path)
    raise ArtefactError(
        f"{path} holds no meta-trained artefact ({ARTEFACT_FILE} or {META_FILE}); "
        "give a directory written by `liftpeft meta-train` or `liftpeft zoo-prior`"
    )


def from_prior(prior: LearnedPrior, path: Path | None) -> MetaTrained:
    """A LiFT prior without ``method.json``: LiFT with the settings stored in the prior."""
    config_class = available_methods()["lift"].config_class
    fields = {f.name for f in dataclasses.fields(config_class)}
    settings = {k: v for k, v in prior.config.items() if k in fields}
    backbone_settings = {k: prior.config[k] for k in ("max_length",) if k in prior.config}
    return MetaTrained(
        "lift", settings, prior, backbone=dict(prior.backbone), backbone_settings=backbone_settings, path=path
    )


def save_prior(
    prior: LearnedPrior,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    backbone_settings: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    also: Callable[[Path], Any] | None = None,
) -> MetaTrained:
    """Save a prior built without meta-training (``zoo-prior``) as a LiFT artefact in ``out``.

    ``also(folder)`` writes more of the artefact (the components as peft adapters) into the folder
    being built, so it is published with the prior or not at all.
    """
    result = from_prior(prior, None)
    result.backbone_settings.update(backbone_settings or {})
    target = claim_output(out, "prior", overwrite=overwrite, publish=True)
    result.path = target.path
    with target, target.build() as tmp:  # a prior there stays until this one is complete
        save_state(tmp, prior)
        atomic_write_json(tmp / ARTEFACT_FILE, _artefact_record(result, extra))
        if also is not None:
            also(tmp)
    return result


def adapt(
    trained: MetaTrained, task: TaskObjective, *, seed: int = 0, **test_time: Any
) -> tuple[torch.Tensor, Any]:
    """Adapt ``trained`` to ``task``; returns ``(samples (M, d), the method object used)``.

    ``test_time``: overrides of the method's declared test-time settings (others are refused).
    """
    method = trained.build(**test_time)
    torch.manual_seed(seed)
    return method.adapt(trained.state, task, seed), method
