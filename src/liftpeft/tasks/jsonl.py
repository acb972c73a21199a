"""Reading and writing task folders.

A task is a folder ``<name>/`` holding ``train.jsonl`` and optionally ``dev.jsonl`` and ``test.jsonl``;
a task collection is a folder of task folders. Every line is one JSON object (see ``schema``).
Malformed input fails with the file, the line number and what is wrong.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from liftpeft.atomic import atomic_write_text
from liftpeft.tasks.schema import (
    KIND_OF,
    SPLITS,
    ChoiceExample,
    Example,
    PairExample,
    Task,
    TextExample,
)


class TaskFormatError(ValueError):
    """A task file that cannot be read; the message names the file and line."""


def _parse_line(obj: object) -> Example:
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    keys = set(obj)
    if "options" in keys or "label" in keys:
        missing = {"input", "options", "label"} - keys
        if missing:
            raise ValueError(
                f"a choice example needs 'input', 'options' and 'label'; missing {sorted(missing)}"
            )
        if not isinstance(obj["input"], str):
            raise ValueError("'input' must be a string")
        options = obj["options"]
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise ValueError("'options' must be a list of strings")
        label = obj["label"]
        if isinstance(label, bool) or not isinstance(label, int):
            raise ValueError(f"'label' must be an integer index into 'options', got {label!r}")
        return ChoiceExample(obj["input"], tuple(options), label)
    if "target" in keys:
        if not isinstance(obj.get("input"), str) or not isinstance(obj["target"], str):
            raise ValueError("a text-to-text example needs string fields 'input' and 'target'")
        return PairExample(obj["input"], obj["target"])
    if "text" in keys:
        if not isinstance(obj["text"], str):
            raise ValueError("'text' must be a string")
        return TextExample(obj["text"])
    raise ValueError(
        "unrecognised example; expected one of {input, options, label}, {input, target} or {text}, "
        f"got keys {sorted(keys)}"
    )


def read_examples(path: str | os.PathLike) -> list[Example]:
    """Read one ``.jsonl`` file; blank lines are skipped."""
    path = Path(path)
    examples: list[Example] = []
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise TaskFormatError(f"{path}:{lineno}: invalid JSON ({err.msg})") from None
            try:
                example = _parse_line(obj)
            except ValueError as err:
                raise TaskFormatError(f"{path}:{lineno}: {err}") from None
            if examples and type(example) is not type(examples[0]):
                raise TaskFormatError(
                    f"{path}:{lineno}: this line is a {KIND_OF[type(example)]!r} example but the file "
                    f"started with {KIND_OF[type(examples[0])]!r} examples; one file holds one kind"
                )
            examples.append(example)
    return examples


def read_task(folder: str | os.PathLike) -> Task:
    """Read a task folder (``train.jsonl`` required, ``dev.jsonl`` / ``test.jsonl`` optional)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"task folder {folder} does not exist")
    train_file = folder / "train.jsonl"
    if not train_file.is_file():
        raise TaskFormatError(f"{folder}: no train.jsonl; a task folder needs at least train.jsonl")
    splits = {}
    for split in SPLITS:
        file = folder / f"{split}.jsonl"
        splits[split] = read_examples(file) if file.is_file() else []
    if not splits["train"]:
        raise TaskFormatError(f"{train_file}: the file holds no examples; a task needs training data")
    kinds = {KIND_OF[type(s[0])] for s in splits.values() if s}
    if len(kinds) > 1:
        raise TaskFormatError(f"{folder}: splits hold different example kinds {sorted(kinds)}")
    return Task(folder.name, kinds.pop(), **splits)


def read_task_collection(folder: str | os.PathLike) -> list[Task]:
    """Read every task folder inside ``folder`` (sorted by name).

    Every visible sub-folder must be a task: one without ``train.jsonl`` (a typo, a misplaced
    folder) is an error rather than a task silently left out. Hidden folders (``.name``) are skipped.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"task collection {folder} does not exist")
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    broken = [p for p in subdirs if not (p / "train.jsonl").is_file()]
    if broken and len(broken) < len(subdirs):
        found = sorted(q.name for q in broken[0].iterdir())[:4]
        raise TaskFormatError(
            f"{broken[0]} has no train.jsonl (it holds {found or 'nothing'}); every folder in the task "
            f"collection {folder} must be a task: add train.jsonl or move the folder out"
            + (f" ({len(broken)} such folders)" if len(broken) > 1 else "")
        )
    subdirs = [p for p in subdirs if p not in broken]
    if not subdirs:
        raise TaskFormatError(
            f"{folder}: no task folders found; a collection is a folder of <task>/train.jsonl folders"
        )
    return [read_task(p) for p in subdirs]


def example_to_dict(example: Example) -> dict:
    if isinstance(example, ChoiceExample):
        return {"input": example.input, "options": list(example.options), "label": example.label}
    if isinstance(example, PairExample):
        return {"input": example.input, "target": example.target}
    return {"text": example.text}


def _atomic_write_lines(path: Path, lines: Iterable[str]) -> None:
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def write_task(task: Task, folder: str | os.PathLike) -> Path:
    """Write ``task`` as ``folder/<task.name>/{train,dev,test}.jsonl`` (each file written atomically)."""
    out = Path(folder) / task.name
    for split in SPLITS:
        examples = task.split(split)
        if examples:
            _atomic_write_lines(
                out / f"{split}.jsonl",
                (json.dumps(example_to_dict(e), ensure_ascii=False) for e in examples),
            )
    return out


def write_task_collection(tasks: Iterable[Task], folder: str | os.PathLike) -> Path:
    folder = Path(folder)
    for task in tasks:
        write_task(task, folder)
    return folder
