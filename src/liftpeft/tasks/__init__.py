"""Tasks: in-memory types and the task-folder file format."""

from liftpeft.tasks.jsonl import (
    TaskFormatError,
    read_examples,
    read_task,
    read_task_collection,
    write_task,
    write_task_collection,
)
from liftpeft.tasks.schema import ChoiceExample, Example, PairExample, Task, TaskKind, TextExample

__all__ = [
    "ChoiceExample",
    "Example",
    "PairExample",
    "Task",
    "TaskFormatError",
    "TaskKind",
    "TextExample",
    "read_examples",
    "read_task",
    "read_task_collection",
    "write_task",
    "write_task_collection",
]
