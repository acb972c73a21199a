"""In-memory task types.

A *task* is one fine-tuning problem: a name, a kind and up to three splits of examples.
Three kinds of example exist, matching the three JSON line shapes of a task folder:

* ``ChoiceExample``  ``{"input": str, "options": [str, ...], "label": int}`` (kind ``"choice"``)
* ``PairExample``    ``{"input": str, "target": str}``                     (kind ``"text2text"``)
* ``TextExample``    ``{"text": str}``                                     (kind ``"lm"``)

All examples of one task have the same kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

TaskKind = Literal["choice", "text2text", "lm"]
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class ChoiceExample:
    """Multiple choice / classification: pick ``options[label]`` given ``input``."""

    input: str
    options: tuple[str, ...]
    label: int

    def __post_init__(self) -> None:
        if len(self.options) < 2:
            raise ValueError(f"a choice example needs at least 2 options, got {len(self.options)}")
        if not 0 <= self.label < len(self.options):
            raise ValueError(
                f"label {self.label} is out of range for {len(self.options)} options "
                f"(labels are 0-based indices into 'options')"
            )


@dataclass(frozen=True)
class PairExample:
    """Text-to-text: generate ``target`` from ``input``."""

    input: str
    target: str


@dataclass(frozen=True)
class TextExample:
    """Language modelling: predict every next token of ``text``."""

    text: str


Example = ChoiceExample | PairExample | TextExample

KIND_OF: dict[type, TaskKind] = {ChoiceExample: "choice", PairExample: "text2text", TextExample: "lm"}


@dataclass
class Task:
    """One task: ``train`` examples for fitting, optional ``dev`` and ``test`` for selection and scoring."""

    name: str
    kind: TaskKind
    train: list[Example]
    dev: list[Example] = field(default_factory=list)
    test: list[Example] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.train:
            raise ValueError(f"task {self.name!r} has no training examples; add lines to train.jsonl")
        for split in SPLITS:
            for example in getattr(self, split):
                if KIND_OF[type(example)] != self.kind:
                    raise ValueError(
                        f"task {self.name!r} mixes example kinds: its {split} split holds a "
                        f"{KIND_OF[type(example)]!r} example in a {self.kind!r} task"
                    )

    def split(self, name: str) -> list[Example]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        return getattr(self, name)


def kind_of(examples: Sequence[Example]) -> TaskKind:
    """The kind shared by ``examples`` (raises if they mix kinds or are empty)."""
    kinds = {KIND_OF[type(e)] for e in examples}
    if len(kinds) != 1:
        raise ValueError(f"examples must share one kind, found {sorted(kinds) or 'none'}")
    return kinds.pop()
