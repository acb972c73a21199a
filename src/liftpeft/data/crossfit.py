"""CrossFit (Ye et al. 2021) text-to-text tasks from the files CrossFit's own build script writes.

Layout (``tasks/_build_gym.py`` of INK-USC/CrossFit, one folder per task under the data root)::

    <root>/<task>/<task>_<k>_<seed>_train.tsv     k = 16 per class (classification) or 32 (other)
    <root>/<task>/<task>_<k>_<seed>_dev.tsv       seeds 100, 13, 21, 42, 87
    <root>/<task>/<task>_<k>_<seed>_test.tsv

Each line is ``input<TAB>output`` (a task with several reference answers writes more tab-separated
outputs; the first is the target here). CrossFit's models read ``" [<task>] " + input``; so does
this loader unless ``task_prefix`` is off. With ``as_choice``, every example becomes a multiple
choice over the task's distinct answers (scored by the model's log-likelihood of each answer), which
is how a classification accuracy is read off a text-to-text model. The meta split (which tasks
train, tune and test) comes from ``configs/crossfit_splits.yaml`` (``cls45``: the LiFT paper's
CLS-45) or from any CrossFit split file (JSON / YAML with ``train`` / ``dev`` / ``test`` lists).
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from liftpeft.tasks.jsonl import TaskFormatError
from liftpeft.tasks.schema import ChoiceExample, PairExample, Task

SEEDS = (100, 13, 21, 42, 87)
SPLIT_FILE = "crossfit_splits.yaml"
_BUILD_HINT = (
    "build the CrossFit data with its own script (INK-USC/CrossFit: cd tasks; python _build_gym.py --build) "
    "and set root to its data folder"
)


@dataclass(frozen=True)
class CrossFitConfig:
    """Where the CrossFit files are and how they become liftpeft tasks."""

    root: str | None = field(default=None, metadata={"help": "CrossFit data folder (<task>/<task>_*.tsv)"})
    split: str = field(default="cls45", metadata={"help": "a split of crossfit_splits.yaml, or a split file"})
    seed: int = field(default=100, metadata={"help": "which of CrossFit's five samples (100 13 21 42 87)"})
    k: int | None = field(default=None, metadata={"help": "the k in the file names (None: the one present)"})
    task_prefix: bool = field(default=True, metadata={"help": "prepend ' [<task>] ' as CrossFit does"})
    as_choice: bool = field(default=False, metadata={"help": "score as choice among the task's answers"})
    max_test: int | None = field(default=1000, metadata={"help": "cap on test examples per task"})

    def __post_init__(self) -> None:
        if self.root is None:
            raise ValueError(f"the CrossFit benchmark needs settings root (the data folder); {_BUILD_HINT}")
        if self.max_test is not None and self.max_test < 1:
            raise ValueError(f"max_test must be >= 1 or null, got {self.max_test}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(cls.__dataclass_fields__)


def read_tsv(path: Path) -> list[tuple[str, list[str]]]:
    """``(input, outputs)`` per line of a CrossFit ``.tsv`` file (lines without an output are skipped,
    with a warning, as CrossFit's loader skips them)."""
    rows, skipped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        fields = line.split("\t")
        outputs = [o for o in fields[1:] if o.strip()]
        if not outputs:
            skipped += 1
            continue
        rows.append((fields[0], outputs))
    if skipped:
        warnings.warn(f"{path}: {skipped} line(s) without an output were skipped", stacklevel=2)
    return rows


def task_files(root: Path, task: str, seed: int, k: int | None = None) -> dict[str, Path]:
    """The train / dev / test files of ``task`` for ``seed`` (and ``k``, else the one k present)."""
    folder = root / task
    pattern = re.compile(re.escape(task) + r"_(\d+)_" + str(int(seed)) + r"_(train|dev|test)\.tsv")
    found: dict[int, dict[str, Path]] = {}
    for path in sorted(folder.glob("*.tsv")) if folder.is_dir() else []:
        match = pattern.fullmatch(path.name)
        if match:
            found.setdefault(int(match[1]), {})[match[2]] = path
    if k is not None:
        found = {k: found[k]} if k in found else {}
    if not found:
        raise FileNotFoundError(f"{folder}: no {task}_<k>_{seed}_{{train,dev,test}}.tsv files; {_BUILD_HINT}")
    if len(found) > 1:
        raise TaskFormatError(f"{folder} holds files for k = {sorted(found)}; set k to one of them")
    ((k_found, files),) = found.items()
    missing = sorted({"train", "dev", "test"} - set(files))
    if missing:
        raise TaskFormatError(f"{folder}: {task}_{k_found}_{seed}_{missing[0]}.tsv is missing")
    return files


def read_crossfit_task(root: str | Path, task: str, config: CrossFitConfig) -> Task:
    """One CrossFit task as a liftpeft ``Task`` (text-to-text, or choice with ``as_choice``)."""
    files = task_files(Path(root), task, config.seed, config.k)
    rows = {split: read_tsv(path) for split, path in files.items()}
    if config.max_test is not None:
        rows["test"] = rows["test"][: config.max_test]
    prefix = f" [{task}] " if config.task_prefix else ""
    if not rows["train"]:
        raise TaskFormatError(f"{files['train']}: no examples; a task needs training data")
    if config.as_choice:
        answers = sorted({outs[0] for split in rows.values() for _, outs in split})
        if len(answers) < 2:
            raise TaskFormatError(f"task {task!r} has one distinct answer; it cannot be a choice task")
        splits = {
            s: [ChoiceExample(prefix + inp, tuple(answers), answers.index(outs[0])) for inp, outs in r]
            for s, r in rows.items()
        }
        return Task(task, "choice", **splits)
    splits = {s: [PairExample(prefix + inp, outs[0]) for inp, outs in r] for s, r in rows.items()}
    return Task(task, "text2text", **splits)


def read_split(split: str) -> dict[str, list[str]]:
    """``{train, dev, test: [task, ...]}`` of a named split of ``crossfit_splits.yaml`` or a split file."""
    path = Path(split).expanduser()
    if path.suffix in (".json", ".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"CrossFit split file {path} does not exist")
        data = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    else:
        shipped = yaml.safe_load((resources.files("liftpeft") / "configs" / SPLIT_FILE).read_text())
        if split not in shipped:
            raise ValueError(
                f"unknown CrossFit split {split!r}; shipped: {sorted(shipped)} (or give a split file)"
            )
        data = shipped[split]
    if not isinstance(data, dict) or not all(isinstance(data.get(s), list) for s in ("train", "test")):
        raise ValueError(f"CrossFit split {split!r} needs lists 'train' and 'test' (and optionally 'dev')")
    return {s: [str(t) for t in data.get(s) or []] for s in ("train", "dev", "test")}


def load_crossfit(settings: dict[str, Any]) -> dict[str, list[Task]]:
    """The meta-train / meta-dev / meta-test task collections of a CrossFit split."""
    config = CrossFitConfig(**{k: v for k, v in settings.items() if k in CrossFitConfig.names()})
    split = read_split(config.split)
    root = Path(config.root).expanduser()
    wanted = [t for tasks in split.values() for t in tasks]
    absent = [t for t in wanted if not (root / t).is_dir()]
    if absent:
        raise FileNotFoundError(
            f"{len(absent)} of the {len(wanted)} tasks of split {config.split!r} are not in {root} "
            f"(e.g. {', '.join(absent[:3])}); {_BUILD_HINT}, or give a split of the tasks you have"
        )
    return {s: [read_crossfit_task(root, t, config) for t in tasks] for s, tasks in split.items()}
