"""The Python API, mirroring the command line: meta-train a prior (or build one from a zoo of
adapters), adapt, export, evaluate.

>>> import tempfile, pathlib
>>> from liftpeft import api
>>> from liftpeft.peft_integration.tiny import make_tiny_model
>>> from liftpeft.data.synthetic import write_rule_family
>>> work = pathlib.Path(tempfile.mkdtemp())
>>> model = make_tiny_model("bert", work / "model")                  # any transformers model works
>>> tasks = write_rule_family(work / "tasks", n_tasks=4, seed=0)      # a folder of task folders
>>> prior = api.meta_train(model, tasks / "train", work / "prior", steps=60, warmup_steps=20,
...                        burnin_steps=10, k=1, sigma=1.0, beta=1.0, quiet=True)
>>> adapted = api.adapt(work / "prior", tasks / "test" / "task-000", work / "adapter", steps=5)
>>> sorted(p.name for p in adapted.adapter_dir.iterdir() if not p.name.startswith("."))
['README.md', 'adapter_config.json', 'adapter_model.safetensors', 'liftpeft.json']
>>> metrics = api.evaluate(model, tasks / "test" / "task-000", adapter=work / "adapter")
>>> sorted(metrics)
['accuracy', 'chance_accuracy', 'loss', 'macro_f1', 'n']
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from liftpeft import hub, progress, service
from liftpeft.learned_prior import LearnedPrior
from liftpeft.methods.base import MetaProblem, available_methods, build_method
from liftpeft.outputs import claim_output
from liftpeft.peft_integration import (
    PeftBackbone,
    PeftTaskObjective,
    adapter_to_theta,
    backbone_from_description,
    export_adapter,
    read_adapter_description,
)
from liftpeft.tasks import Task, read_task, read_task_collection
from liftpeft.zoo import COMPONENTS, export_components, load_adapter_zoo
from liftpeft.zoo import zoo_prior as _zoo_prior_from_thetas


def _tasks(tasks: str | os.PathLike | Sequence[Task]) -> list[Task]:
    if isinstance(tasks, (str, os.PathLike)):
        return read_task_collection(tasks)
    return list(tasks)


def _task(task: str | os.PathLike | Task) -> Task:
    return read_task(task) if isinstance(task, (str, os.PathLike)) else task


def meta_train(
    model: str | os.PathLike,
    tasks: str | os.PathLike | Sequence[Task],
    out: str | os.PathLike,
    *,
    method: str = "lift",
    seed: int = 0,
    resume: bool = False,
    overwrite: bool = False,
    checkpoint_every: int | None = None,
    peft_config: Any = None,
    family: str = "auto",
    choice_head: str = "cross",
    max_length: int = 256,
    quiet: bool = False,
    tensorboard: bool = False,
    **settings: Any,
) -> service.MetaTrained:
    """Meta-train any registered ``method`` (default LiFT) on a task collection; save it to ``out``.

    ``settings`` are the method's config fields (LiFT: ``k``, ``steps``, ``sigma``, ``beta``, ...;
    ``liftpeft methods`` lists the methods). ``out`` receives the artefact (the state, e.g.
    ``prior.safetensors`` + ``prior.json`` for LiFT, and ``method.json`` with the resolved settings
    and backbone), and ``out/run`` the checkpoints and metrics log (``metrics.jsonl``; TensorBoard
    event files in ``out/tensorboard`` with ``tensorboard=True`` if ``tensorboard`` is installed).
    ``resume=True`` continues a killed run (``checkpoint_every``: meta-steps between checkpoints,
    default the method's own); ``overwrite=True`` replaces an artefact already in
    ``out`` (only its own files). A non-empty ``out`` that holds no liftpeft artefact is refused.
    """
    progress.set_quiet(quiet)
    build_method(method, **settings)  # bad settings are refused before the model loads
    claim_output(out, "prior", overwrite=overwrite, resume=resume, can_resume=True, check_only=True)
    backbone = PeftBackbone(model, peft_config, family=family, choice_head=choice_head, seed=seed)
    task_list = _tasks(tasks)
    objectives = [PeftTaskObjective(backbone, t, max_length=max_length) for t in task_list]
    problem = MetaProblem(objectives, backbone.theta0, description=backbone.describe())
    on_log = _tensorboard_logger(Path(out) / "tensorboard") if tensorboard else None
    return service.meta_train(
        method,
        settings,
        problem,
        out,
        seed=seed,
        resume=resume,
        overwrite=overwrite,
        checkpoint_every=checkpoint_every,
        on_log=on_log,
        backbone_settings={"max_length": max_length},
        extra={
            "command": "meta-train",
            "tasks": str(tasks) if isinstance(tasks, (str, os.PathLike)) else [t.name for t in task_list],
        },
    )


def zoo_prior(
    adapters: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    k: int = 5,
    beta: float = 0.01,
    sigma: float = 0.01,
    seed: int = 0,
    model: str | os.PathLike | None = None,
    family: str | None = None,
    choice_head: str | None = None,
    max_length: int = 256,
    overwrite: bool = False,
    quiet: bool = False,
    **settings: Any,
) -> LearnedPrior:
    """Build a prior from already fine-tuned ``peft`` adapters (no meta-training) and save it to ``out``.

    ``adapters``: adapter directories, or folders of them; all must share the base model and adapter
    shape (otherwise ``BackboneMismatchError`` names the one that differs). The mixture is the
    ``k``-component ``OnlineGaussianMixture`` initialised from all adapters (k-means++, seeded by
    ``seed``); the center is the backbone's PEFT initialisation (it does not enter test-time
    adaptation, whose prior is the mixture widened by ``beta``). ``settings`` are LiFT test-time
    settings stored with the prior for ``adapt`` (``adapt_steps``, ``step_size``, ``tau``, ...).
    ``out`` follows ``meta_train``'s rule: a prior there is replaced only with ``overwrite=True``.
    Every adapter is checked before anything is read or written (``zoo_check``). ``out/components/
    component-<j>`` holds each mixture component's mean as a plain peft adapter with a model card.
    """
    progress.set_quiet(quiet)
    config = build_method("lift", k=k, beta=beta, sigma=sigma, **settings).config
    claim_output(out, "prior", overwrite=overwrite, check_only=True)
    zoo = load_adapter_zoo(adapters, model=model, family=family, choice_head=choice_head)
    stored = {**dataclasses.asdict(config), "adapters": [str(d) for d in zoo.dirs]}
    prior = _zoo_prior_from_thetas(
        zoo.thetas,
        zoo.backbone.theta0,
        k=k,
        beta=beta,
        sigma=sigma,
        seed=seed,
        backbone=zoo.backbone.describe(),
        task_names=zoo.names,
        config=stored,
        spread=config.spread,
        tail_dof=config.tail_dof,
    )
    service.save_prior(
        prior,
        out,
        overwrite=overwrite,
        backbone_settings={"max_length": max_length},
        extra={"command": "zoo-prior", "seed": seed, "adapters": stored["adapters"]},
        also=lambda folder: export_components(zoo.backbone, prior, folder / COMPONENTS, zoo.names),
    )
    return prior


def _tensorboard_logger(folder: Path):
    """A metrics callback writing TensorBoard scalars, or None (with a warning) without tensorboard."""
    import warnings

    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warnings.warn(
            "tensorboard is not installed (pip install tensorboard); writing metrics.jsonl only", stacklevel=3
        )
        return None
    writer = SummaryWriter(str(folder))

    def log(record: dict[str, Any]) -> None:
        for key, value in record.items():
            if isinstance(value, (int, float)) and key != "step":
                writer.add_scalar(key, value, record["step"])
        for j, weight in enumerate(record.get("mixture_weights", [])):
            writer.add_scalar(f"mixture_weight/{j}", weight, record["step"])
        writer.flush()

    return log


@dataclass
class AdaptOutcome:
    """What ``adapt`` produced: the adapter (last sample), all kept samples, and where it was saved."""

    theta: torch.Tensor
    samples: torch.Tensor
    adapter_dir: Path | None
    backbone: PeftBackbone


def adapt(
    prior: str | os.PathLike | LearnedPrior | service.MetaTrained,
    task: str | os.PathLike | Task,
    out: str | os.PathLike | None = None,
    *,
    model: str | os.PathLike | None = None,
    seed: int = 0,
    steps: int | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    revision: str | None = None,
    **settings: Any,
) -> AdaptOutcome:
    """Adapt a meta-trained artefact (any method's; a LiFT prior) to a new task; export a ``peft``
    adapter (the last sample) to ``out`` if given. ``prior`` is a directory, or the Hub repo id of
    a prior (``LearnedPrior.from_pretrained``; ``revision``: its branch, tag or commit).

    ``model`` overrides where the base model is (it must be the model the artefact was made for);
    ``steps`` and ``settings`` override the method's test-time settings (``adapt_step_size``, ...;
    others are fixed by meta-training and refused). ``out`` must be new, empty or a liftpeft adapter
    (replaced only with ``overwrite=True``, then only its own files); anything else is refused
    before adapting, and left untouched.
    """
    progress.set_quiet(quiet)
    if out is not None:
        claim_output(out, "adapter", overwrite=overwrite, check_only=True)
    if isinstance(prior, service.MetaTrained):
        trained = prior
    elif isinstance(prior, LearnedPrior):
        trained = service.from_prior(prior, None)
    else:
        trained = service.load(hub.resolve(prior, revision=revision))
    overrides = service.check_test_time(trained.method, {"adapt_steps": steps, **settings})
    backbone = backbone_from_description(trained.backbone, model=model)
    the_task = _task(task)
    max_length = int(trained.backbone_settings.get("max_length", 256))
    objective = PeftTaskObjective(backbone, the_task, max_length=max_length)
    samples, method = service.adapt(trained, objective, seed=seed, **overrides)
    adapter_dir = None
    if out is not None:
        test_time = set(available_methods()[trained.method].test_time_fields)
        adapter_dir = export_adapter(
            backbone,
            samples[-1],
            claim_output(out, "adapter", overwrite=overwrite, publish=True),
            metadata={
                "adapted_on": the_task.name,
                "method": trained.method,
                "seed": seed,
                "adapt": {k: v for k, v in service.settings_of(method).items() if k in test_time},
                "prior": str(trained.path) if trained.path is not None else None,
                # what the method reports about this adaptation (LiFT: the prior component chosen and
                # the new task's cluster responsibilities)
                "adapt_report": getattr(method, "last_adapt_report", None),
            },
        )
    return AdaptOutcome(samples[-1], samples, adapter_dir, backbone)


def evaluate(
    model: str | os.PathLike,
    task: str | os.PathLike | Task,
    *,
    adapter: str | os.PathLike | None = None,
    split: str = "test",
    max_length: int = 256,
    family: str = "auto",
    choice_head: str = "cross",
) -> dict[str, float]:
    """Metrics of ``model`` (with ``adapter`` if given, else the PEFT initialisation) on a task split."""
    if adapter is not None:
        backbone = backbone_from_description(read_adapter_description(adapter), model=model)
        theta = adapter_to_theta(backbone, adapter)
    else:
        backbone = PeftBackbone(model, family=family, choice_head=choice_head)
        theta = backbone.theta0
    objective = PeftTaskObjective(backbone, _task(task), max_length=max_length)
    return objective.evaluate(theta, split)


def info(path: str | os.PathLike, *, revision: str | None = None) -> dict[str, Any]:
    """What a prior or adapter directory (or a prior's Hub repo id) holds: kind, base model, PEFT
    config, K, weights, settings."""
    import json

    from liftpeft.learned_prior import META_FILE
    from liftpeft.peft_integration.export import METADATA_FILE

    path = hub.resolve(path, revision=revision)
    if (path / service.ARTEFACT_FILE).is_file() and not (path / META_FILE).is_file():
        trained = service.load(path)
        return {
            "kind": "meta-trained",
            "method": trained.method,
            "path": str(path),
            "base_model": trained.backbone.get("model"),
            "family": trained.backbone.get("family"),
            "peft_config": _peft_summary(trained.backbone.get("peft_config", {})),
            "adapter_parameters": sum(_prod(s) for s in trained.backbone.get("spec", {}).get("shapes", [])),
            "seed": trained.seed,
            "meta_train_seconds": round(trained.seconds, 3),
            "settings": trained.settings,
            "backbone_settings": trained.backbone_settings,
            "created": _mtime(path / service.ARTEFACT_FILE),
        }
    if (path / META_FILE).is_file():
        prior = LearnedPrior.load(path)
        return {
            "kind": "prior",
            "method": "lift",
            "path": str(path),
            "source": prior.source,
            "base_model": prior.backbone.get("model"),
            "family": prior.backbone.get("family"),
            "peft_config": _peft_summary(prior.backbone.get("peft_config", {})),
            "adapter_parameters": prior.dim,
            "k": prior.n_components,
            "weights": [round(float(w), 4) for w in prior.weights],
            "beta": prior.beta,
            "sigma": prior.sigma,
            "n_tasks": len(prior.task_names),
            **prior.structure_summary(),
            "settings": prior.config,
            "created": prior.created,
            "liftpeft_version": prior.version,
        }
    if (path / "adapter_config.json").is_file():
        config = json.loads((path / "adapter_config.json").read_text())
        meta = json.loads((path / METADATA_FILE).read_text()) if (path / METADATA_FILE).is_file() else {}
        backbone = meta.get("backbone", {})
        size = sum(p.stat().st_size for p in path.glob("adapter_model.*"))
        return {
            "kind": "adapter",
            "path": str(path),
            "base_model": config.get("base_model_name_or_path"),
            "family": backbone.get("family", "unknown (not written by liftpeft)"),
            "peft_config": _peft_summary(config),
            "adapter_parameters": sum(_prod(s) for s in backbone.get("spec", {}).get("shapes", [])) or None,
            "file_bytes": size,
            "adapted_on": meta.get("adapted_on"),
            "adapt": meta.get("adapt"),
            "adapt_report": meta.get("adapt_report"),
            "created": _mtime(path / "adapter_config.json"),
            "liftpeft_version": backbone.get("liftpeft_version"),
        }
    raise FileNotFoundError(
        f"{path} is neither a liftpeft prior (prior.json) nor a peft adapter (adapter_config.json)"
    )


def push_prior(
    path: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    base_model: str | None = None,
    token: str | None = None,
) -> Any:
    """Upload the LiFT prior in ``path`` (written by ``meta-train`` or ``zoo-prior``) with a model
    card to the Hub repo ``repo_id``; returns ``huggingface_hub``'s ``CommitInfo``."""
    return hub.load(path).push_to_hub(
        repo_id,
        private=private,
        revision=revision,
        create_pr=create_pr,
        commit_message=commit_message,
        base_model=base_model,
        token=token,
    )


def _peft_summary(config: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "peft_type",
        "r",
        "lora_alpha",
        "target_modules",
        "target_parameters",
        "layers_to_transform",
        "task_type",
    )
    return {k: config[k] for k in keys if config.get(k) not in (None, [], {})}


def _prod(shape: list[int]) -> int:
    out = 1
    for n in shape:
        out *= int(n)
    return out


def _mtime(path: Path) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.timezone.utc).isoformat(timespec="seconds")


def example(out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write the README tour's example workspace (tiny BERT in ``out/model``, rule-family tasks in
    ``out/tasks/train`` and ``out/tasks/test``, ``bench.yaml``, ``EXAMPLE.md``); see ``liftpeft.example``."""
    from liftpeft.example import write_example

    return write_example(out, overwrite=overwrite)


def tasks_from_datasets(
    sources: Sequence[Any],
    out: str | os.PathLike,
    *,
    input: str | None = None,
    label: str | None = None,
    options: str | None = None,
    choices: Sequence[str] | None = None,
    target: str | None = None,
    text: str | None = None,
    task_column: str | None = None,
    train_size: int | None = None,
    dev_size: int = 0,
    overwrite: bool = False,
    **kw: Any,
) -> Path:
    """Write a task collection in ``out`` from ``datasets`` sources (``Dataset`` / ``DatasetDict``
    objects, ``save_to_disk`` directories, data files or directories, hub ids; a ``(name, source)``
    pair names its task). The columns: ``input`` with ``label`` (and ``options`` or ``choices``, unless
    the label is a ``ClassLabel``), ``input`` with ``target``, or ``text``; ``task_column`` splits a
    source into tasks. ``train_size`` / ``dev_size`` carve splits off the train rows; ``kw``:
    ``max_examples``, ``streaming``, ``splits``, ``keep_tasks``, ``shuffle_seed``, ``subset``,
    ``revision``, ``token``, ``cache_dir`` (``liftpeft.tasks.from_datasets``). Needs
    ``pip install 'liftpeft[hub]'``.

    >>> import tempfile, pathlib
    >>> from datasets import Dataset
    >>> rows = {"question": ["2+2?", "3+3?", "1+1?"], "answer": ["4", "6", "2"]}
    >>> out = tasks_from_datasets([("sums", Dataset.from_dict(rows))], pathlib.Path(tempfile.mkdtemp()) / "t",
    ...                           input="question", target="answer", train_size=2)
    >>> [t.name for t in read_task_collection(out)], len(read_task_collection(out)[0].test)
    (['sums'], 1)
    """
    from liftpeft.tasks.from_datasets import Carve, ColumnMapping, write_tasks_from_datasets

    mapping = ColumnMapping(
        input=input,
        label=label,
        options=options,
        choices=tuple(choices) if choices is not None else None,
        target=target,
        text=text,
        task=task_column,
    )
    carve = Carve(train_size, dev_size) if train_size is not None else None
    path, _ = write_tasks_from_datasets(sources, mapping, out, overwrite=overwrite, carve=carve, **kw)
    return Path(path)
