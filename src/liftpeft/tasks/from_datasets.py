"""Tasks from ``datasets``: map a dataset's columns onto the task format and write a task collection.

A ``ColumnMapping`` names the columns of one example kind (``schema``):

* choice    ``input`` + ``label`` (an index, or an option text) and the option texts: an ``options``
  column (one list per row), fixed ``choices``, or the names of a ``ClassLabel`` label feature;
* text2text ``input`` + ``target``;
* lm        ``text``.

``task`` names a column that splits one dataset into tasks (one task per distinct value). Source
splits map onto ``train`` / ``dev`` / ``test`` (``validation``, ``valid``, ``val`` -> ``dev``); others are
left out with a warning. ``train_size`` / ``dev_size`` carve train / dev (and the rest as test, if the
source has no test split) off the source's ``train`` split, per task, CrossFit style.
``max_examples`` caps every split of every task, which is what makes ``streaming=True`` read a large
source only as far as needed. Bad mappings fail with one sentence naming the column, the row and the fix.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from liftpeft.tasks.hf_sources import describe_source, open_source
from liftpeft.tasks.schema import KIND_OF, SPLITS, ChoiceExample, Example, PairExample, Task, TextExample

SPLIT_NAMES = {
    "train": "train",
    "validation": "dev",
    "valid": "dev",
    "val": "dev",
    "dev": "dev",
    "test": "test",
}


class MappingError(ValueError):
    """A column mapping that does not fit the dataset; the message names the column and the fix."""


@dataclass(frozen=True)
class ColumnMapping:
    """Which columns make an example (see the module doc); exactly one example kind must be named."""

    input: str | None = field(default=None, metadata={"help": "input text column (choice, text2text)"})
    label: str | None = field(default=None, metadata={"help": "label column: index or option text"})
    options: str | None = field(default=None, metadata={"help": "column of per-row option lists"})
    choices: tuple[str, ...] | None = field(default=None, metadata={"help": "option texts of every row"})
    target: str | None = field(default=None, metadata={"help": "target text column (text2text)"})
    text: str | None = field(default=None, metadata={"help": "text column (language modelling)"})
    task: str | None = field(default=None, metadata={"help": "column whose values split tasks"})

    def __post_init__(self) -> None:
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(str(c) for c in self.choices))
            if len(self.choices) < 2:
                raise MappingError(f"choices needs at least 2 option texts, got {list(self.choices)}")
        kinds = [k for k, on in (("choice", self.label), ("text2text", self.target), ("lm", self.text)) if on]
        if len(kinds) != 1:
            raise MappingError(
                "name exactly one example kind: a label column (choice), a target column (text2text) or a "
                f"text column (lm); got {kinds or 'none'}"
            )
        if kinds[0] != "lm" and not self.input:
            raise MappingError(f"a {kinds[0]} mapping needs the input column too (input=...)")
        if kinds[0] != "choice" and (self.options or self.choices):
            raise MappingError("options / choices belong to a choice mapping (give a label column)")
        if self.options and self.choices:
            raise MappingError("give either an options column or fixed choices, not both")

    @property
    def kind(self) -> str:
        return "choice" if self.label else "text2text" if self.target else "lm"

    def columns(self) -> list[str]:
        return [c for c in (self.input, self.label, self.options, self.target, self.text, self.task) if c]


def task_name(value: Any) -> str:
    """A folder-safe task name from a source name or a task column's value."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(value)).strip("_").lstrip(".")
    if not name:
        raise MappingError(f"{value!r} cannot name a task folder; give the task a name")
    return name


def _default_name(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        text = str(source).rstrip("/")
        if os.path.exists(text):
            return task_name(os.path.splitext(os.path.basename(text))[0])
        return task_name(text.replace("/", "__"))
    raise MappingError("an in-memory dataset needs a task name (name=...) or a task column")


def _label_names(features: Any, column: str | None) -> tuple[str, ...] | None:
    feature = (features or {}).get(column) if column else None
    names = getattr(feature, "names", None)
    return tuple(names) if names else None


def _text(value: Any, column: str, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
        return value[0]  # several references (answers): the first is the target
    raise MappingError(f"{where}: column {column!r} holds {type(value).__name__} {value!r}, not text")


class _Converter:
    """Turns rows of one source split into examples of the mapping's kind."""

    def __init__(self, mapping: ColumnMapping, features: Any, source: str) -> None:
        self.m, self.source = mapping, source
        self.class_names = _label_names(features, mapping.label)
        if features is not None:
            missing = [c for c in mapping.columns() if c not in features]
            if missing:
                raise MappingError(
                    f"{source} has no column {missing[0]!r} (its columns: {', '.join(features)}); "
                    "map the columns it has"
                )
        if mapping.kind == "choice" and not (mapping.options or mapping.choices or self.class_names):
            raise MappingError(
                f"{source}: label column {mapping.label!r} is not a ClassLabel, so the option texts are "
                "unknown; give an options column or choices"
            )

    def __call__(self, row: dict[str, Any], where: str) -> Example:
        m = self.m
        missing = [c for c in m.columns() if c not in row]
        if missing:
            raise MappingError(f"{where} has no column {missing[0]!r} (it has {', '.join(row)}); map those")
        if m.kind == "lm":
            return TextExample(_text(row[m.text], m.text, where))
        source_input = _text(row[m.input], m.input, where)
        if m.kind == "text2text":
            return PairExample(source_input, _text(row[m.target], m.target, where))
        options = m.choices or self.class_names
        if m.options:
            raw = row[m.options]
            if not isinstance(raw, (list, tuple)) or len(raw) < 2:
                raise MappingError(f"{where}: options column {m.options!r} must hold a list of >= 2 texts")
            options = tuple(_text(o, m.options, where) for o in raw)
        label = row[m.label]
        if isinstance(label, str):
            if label not in options:
                raise MappingError(f"{where}: label {label!r} is not one of the options {list(options)[:6]}")
            label = options.index(label)
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(options):
            raise MappingError(
                f"{where}: label {label!r} is out of range for {len(options)} options (labels are 0-based; "
                "unlabelled rows, such as -1 in GLUE test splits, cannot train a task: leave that split out)"
            )
        return ChoiceExample(source_input, tuple(options), label)


@dataclass(frozen=True)
class Carve:
    """Split a source's ``train`` rows per task: ``train_size`` train, ``dev_size`` dev, the rest test
    (``rest_is_test``; else left out, when the source has held-out splits of its own)."""

    train_size: int
    dev_size: int = 0
    rest_is_test: bool = True

    def __post_init__(self) -> None:
        for name in ("train_size", "dev_size"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < (1 if name == "train_size" else 0)
            ):
                raise MappingError(f"{name} must be an integer >= {int(name == 'train_size')}, got {value!r}")

    def target(self, seen: int) -> str | None:
        if seen < self.train_size:
            return "train"
        if seen < self.train_size + self.dev_size:
            return "dev"
        return "test" if self.rest_is_test else None


def tasks_from_source(
    source: Any,
    mapping: ColumnMapping,
    *,
    name: str | None = None,
    splits: dict[str, str] | None = None,
    carve: Carve | None = None,
    max_examples: int | None = None,
    keep_tasks: Sequence[str] | None = None,
    shuffle_seed: int | None = None,
    **open_kw: Any,
) -> list[Task]:
    """The tasks of one source (one task, or one per value of ``mapping.task``); see the module doc.

    ``splits``: source split -> ``train`` / ``dev`` / ``test`` (default ``SPLIT_NAMES``).
    ``keep_tasks``: only these values of the task column. ``shuffle_seed``: shuffle each split first
    (``Dataset.shuffle``; for a streamed split, ``IterableDataset.shuffle``'s buffer). ``open_kw``:
    ``subset``, ``streaming``, ``cache_dir``, ``revision``, ``token`` (``hf_sources.open_source``).
    """
    if max_examples is not None and (isinstance(max_examples, bool) or int(max_examples) < 1):
        raise MappingError(f"max_examples must be an integer >= 1, got {max_examples!r}")
    label = describe_source(source)
    table = dict(SPLIT_NAMES if splits is None else splits)
    bad = sorted(set(table.values()) - set(SPLITS))
    if bad:
        raise MappingError(f"splits must map onto {', '.join(SPLITS)}, got {bad}")
    fixed = None if mapping.task else (name or _default_name(source))
    keep = {str(k) for k in keep_tasks} if keep_tasks else None
    found: dict[str, dict[str, list[Example]]] = {}
    opened = open_source(source, **open_kw)
    held_out = any(table.get(n) in ("dev", "test") for n in opened if table.get(n) != "train")
    for split_name, ds in opened.items():
        ours = table.get(split_name)
        if ours is None:
            if splits is not None:
                continue  # the caller named the splits it wants
            warnings.warn(f"{label}: split {split_name!r} is left out (map it with splits=...)", stacklevel=2)
            continue
        if carve is not None and ours != "train":
            ours = "test"  # carving makes train and dev of the train rows; held-out splits are the test
        if shuffle_seed is not None:
            ds = ds.shuffle(seed=shuffle_seed)
        convert = _Converter(mapping, getattr(ds, "features", None), f"{label} [{split_name}]")
        carving = carve if ours == "train" and carve is not None else None
        if carving is not None and held_out:
            carving = Carve(carve.train_size, carve.dev_size, rest_is_test=False)
        _collect(ds, convert, ours, fixed, keep, carving, max_examples, found)
    if not found:
        raise MappingError(f"{label}: no rows were mapped (check the task column values and the splits)")
    return [_make_task(n, parts, label, carve) for n, parts in sorted(found.items())]


def _collect(ds, convert, ours, fixed, keep, carve, cap, found) -> None:
    seen: dict[str, int] = {}
    column = convert.m.task
    for i, row in enumerate(ds):
        name = fixed if fixed is not None else str(row.get(column))
        if keep is not None and name not in keep:
            continue
        name = task_name(name)
        index = seen.get(name, 0)
        seen[name] = index + 1
        target = carve.target(index) if carve is not None else ours
        parts = found.setdefault(name, {s: [] for s in SPLITS})
        if target is None:
            pass  # carved rows past train + dev, when the source has its own held-out split
        elif cap is None or len(parts[target]) < cap:
            parts[target].append(convert(row, f"row {i} of {convert.source}"))
        if cap is not None and (fixed is not None or (keep is not None and len(found) == len(keep))):
            if all(_full(p, carve, ours, cap) for p in found.values()):
                break  # every task is full: a streamed source is read no further


def _full(parts: dict[str, list[Example]], carve: Carve | None, ours: str, cap: int) -> bool:
    """Whether one task has every split that this pass fills at its cap (carved splits at their size)."""
    if carve is None:
        return len(parts[ours]) >= cap
    wanted = {"train": min(cap, carve.train_size), "dev": min(cap, carve.dev_size)}
    if carve.rest_is_test:
        wanted["test"] = cap
    return all(len(parts[s]) >= n for s, n in wanted.items())


def _make_task(name: str, parts: dict[str, list[Example]], source: str, carve: Carve | None) -> Task:
    if not parts["train"]:
        hint = "carve one with train_size" if carve is None else "it has no rows in the train split"
        raise MappingError(f"task {name!r} from {source} has no training examples; {hint}")
    return Task(name, KIND_OF[type(parts["train"][0])], **parts)


def tasks_from_datasets(sources: Iterable[Any], mapping: ColumnMapping, **kw: Any) -> list[Task]:
    """The tasks of several sources: each item is a source or a ``(name, source)`` pair
    (``tasks_from_source`` for each). Two sources giving one task name is an error: rename one."""
    out: dict[str, Task] = {}
    for item in sources:
        name, source = item if isinstance(item, tuple) else (None, item)
        for task in tasks_from_source(source, mapping, name=name, **kw):
            if task.name in out:
                raise MappingError(
                    f"two sources give a task named {task.name!r}; name them (NAME=SOURCE) or split differently"
                )
            out[task.name] = task
    return [out[n] for n in sorted(out)]


def write_tasks_from_datasets(
    sources: Iterable[Any],
    mapping: ColumnMapping,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    **kw: Any,
) -> tuple[os.PathLike, list[Task]]:
    """``tasks_from_datasets`` written as a task collection in ``out`` (``publish_task_collection``):
    a foreign non-empty ``out`` is refused before any source is read."""
    from liftpeft.outputs import claim_output
    from liftpeft.tasks.publish import publish_task_collection

    claim_output(out, "tasks", overwrite=overwrite, check_only=True)
    sources = list(sources)
    tasks = tasks_from_datasets(sources, mapping, **kw)
    manifest = {
        "sources": [
            {"name": s[0], "source": describe_source(s[1])} if isinstance(s, tuple) else describe_source(s)
            for s in sources
        ],
        "mapping": {k: v for k, v in vars(mapping).items() if v is not None},
        "options": {
            k: (vars(v) if isinstance(v, Carve) else v)
            for k, v in kw.items()
            if k != "token" and v is not None
        },
    }
    path = publish_task_collection(tasks, out, overwrite=overwrite, manifest=manifest)
    return path, tasks
