"""The rule family: text multiple-choice tasks with hidden rules (for any ``transformers`` backbone).

``rule_family``: binary multiple-choice tasks on random strings over ``"abcdef"``. Each task follows
one of a few hidden rules -- "answer yes when the string has more ``x`` than ``y``" for a rule's pair
``(x, y)`` -- so tasks of one rule share everything and the family shares the format. A new task's
few examples rarely pin its rule down; the tasks seen in meta-training do.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from liftpeft.tasks.jsonl import write_task_collection
from liftpeft.tasks.schema import ChoiceExample, Task

RULES: tuple[tuple[str, str], ...] = (("a", "b"), ("c", "d"), ("e", "f"))


def rule_task(
    name: str, rule: int, seed: int, n_train: int = 32, n_dev: int = 8, n_test: int = 48, length: int = 12
) -> Task:
    """One task of the rule family: label 0 ("yes") iff the string has more ``x`` than ``y``."""
    rng = random.Random(seed)
    x, y = RULES[rule]

    def example() -> ChoiceExample:
        while True:
            s = "".join(rng.choice("abcdef") for _ in range(length))
            if s.count(x) != s.count(y):
                return ChoiceExample(s, ("yes", "no"), 0 if s.count(x) > s.count(y) else 1)

    return Task(
        name,
        "choice",
        [example() for _ in range(n_train)],
        [example() for _ in range(n_dev)],
        [example() for _ in range(n_test)],
    )


def rule_family(n_tasks: int, seed: int = 0, n_rules: int = 2, **sizes: int) -> list[Task]:
    """``n_tasks`` tasks, task ``i`` following rule ``i % n_rules``."""
    if not 1 <= n_rules <= len(RULES):
        raise ValueError(f"n_rules must be between 1 and {len(RULES)}")
    return [rule_task(f"task-{i:03d}", i % n_rules, seed * 100_003 + i, **sizes) for i in range(n_tasks)]


def write_rule_family(
    folder: str | os.PathLike,
    n_tasks: int = 12,
    n_test_tasks: int = 4,
    seed: int = 0,
    n_rules: int = 2,
    **sizes: int,
) -> Path:
    """Write ``folder/train/<task>/`` (meta-training tasks) and ``folder/test/<task>/`` (held-out tasks)."""
    folder = Path(folder)
    write_task_collection(rule_family(n_tasks, seed, n_rules, **sizes), folder / "train")
    write_task_collection(rule_family(n_test_tasks, seed + 1, n_rules, **sizes), folder / "test")
    return folder
