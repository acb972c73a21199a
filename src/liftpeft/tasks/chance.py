"""Chance levels of multiple-choice tasks, shown beside every score in the reports."""

from __future__ import annotations

from collections import Counter

from liftpeft.tasks.schema import ChoiceExample, Task


def _choice_examples(task: Task, split: str) -> list[ChoiceExample]:
    if task.kind != "choice":
        raise ValueError(f"task {task.name!r} is a {task.kind!r} task; chance levels need 'choice' tasks")
    examples = task.split(split)
    if not examples:
        raise ValueError(f"task {task.name!r} has no {split} examples to compute a chance level on")
    return examples  # type: ignore[return-value]


def chance_accuracy(task: Task, split: str = "test") -> float:
    """Expected accuracy of a uniform random guess: ``mean_i 1 / len(options_i)`` over ``split``."""
    examples = _choice_examples(task, split)
    return sum(1.0 / len(e.options) for e in examples) / len(examples)


def majority_class_rate(task: Task, split: str = "test") -> float | None:
    """Share of ``split`` whose answer is the split's most frequent answer text.

    This is the accuracy of the best constant prediction, so it is only defined (and returned) when
    every example of the split offers the same set of options (a classification task with a fixed
    label set); otherwise ``None``.
    """
    examples = _choice_examples(task, split)
    if len({frozenset(e.options) for e in examples}) != 1:
        return None
    answers = Counter(e.options[e.label] for e in examples)
    return answers.most_common(1)[0][1] / len(examples)
