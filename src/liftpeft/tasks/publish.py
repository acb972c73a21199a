"""Write a task collection into an output folder that never loses a user's files.

The folder is claimed as a ``tasks`` artefact (``outputs.claim_output``): a foreign non-empty folder
is refused, an earlier collection is replaced only with ``overwrite``. The whole collection (task
folders and ``tasks.json``, a manifest of where the tasks came from) is built in a temporary folder
and published by renames, so an interrupted run leaves the old collection or nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from liftpeft._version import __version__
from liftpeft.outputs import claim_output
from liftpeft.tasks.jsonl import write_task_collection
from liftpeft.tasks.schema import SPLITS, Task


def publish_task_collection(
    tasks: Sequence[Task],
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    manifest: dict[str, Any] | None = None,
    flag: str = "--out",
) -> Path:
    """Write ``tasks`` as ``out/<task>/{train,dev,test}.jsonl`` plus ``out/tasks.json``; returns ``out``."""
    if not tasks:
        raise ValueError("no tasks to write")
    claimed = claim_output(out, "tasks", overwrite=overwrite, publish=True, flag=flag)
    with claimed, claimed.build() as tmp:
        write_task_collection(tasks, tmp)
        record = {
            "format": "liftpeft-tasks/1",
            "liftpeft_version": __version__,
            "tasks": {t.name: {"kind": t.kind, **{s: len(t.split(s)) for s in SPLITS}} for t in tasks},
            **(manifest or {}),
        }
        (tmp / "tasks.json").write_text(json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")
    return claimed.path
