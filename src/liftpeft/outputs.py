"""Output directories that never lose a user's files.

Every command that writes (``meta-train``, ``zoo-prior``, ``adapt``, ``bench``, ``report``,
``example``) first claims its output directory with ``claim_output``. The rule:

- a missing or empty directory is created and claimed;
- a non-empty directory must already hold liftpeft's own artefact of the same kind, recognised by
  the marker file ``.liftpeft-output.json`` (or, for artefacts written before the marker existed, by
  the kind's signature file); anything else is refused and left untouched;
- an artefact of the same kind is continued with ``resume`` or replaced with ``overwrite``, which
  removes only the entries the kind owns (listed in the marker); a user's notes beside them stay.

The marker lists the entries the kind may write, so ``--overwrite`` never touches another name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from liftpeft._version import __version__
from liftpeft.atomic import atomic_write_json, usual_mode

MARKER = ".liftpeft-output.json"
MARKER_FORMAT = "liftpeft-output/1"
_BUILD_PREFIX = ".liftpeft-build-"

# What each kind writes (top-level names in its directory) and the files that identified it before
# the marker existed (any one group, all files of it). One table, read by ``claim_output``.
# what ``liftpeft report`` writes (into a results directory, or a folder of its own)
_REPORT_ENTRIES = (
    "report.md",
    "report.html",
    "methods.png",
    "per_task.png",
    "k_sweep.png",
    "sigma_sweep.png",
    "traces.png",
)
KINDS: dict[str, dict[str, tuple]] = {
    "prior": {  # any method's meta-trained state (a LiFT prior, a MAML init, ...)
        "signature": (("method.json",), ("prior.json",), ("state.json",), ("meta_train_seconds.json",)),
        "entries": (
            "method.json",
            "prior.json",
            "prior.safetensors",
            "state.json",
            "state.safetensors",
            "config.json",
            "run",
            "checkpoint",
            "metrics.jsonl",
            "tensorboard",
            "meta_train_seconds.json",
            "components",  # zoo-prior: each mixture component as a plain peft adapter
        ),
    },
    "adapter": {
        "signature": (("liftpeft.json", "adapter_config.json"),),
        "entries": ("adapter_config.json", "adapter_model.safetensors", "README.md", "liftpeft.json"),
    },
    "bench": {
        "signature": (("run.json",), ("results.jsonl",)),
        "entries": ("run.json", "results.jsonl", "states", *_REPORT_ENTRIES),
    },
    "report": {
        "signature": (("report.md",),),
        "entries": _REPORT_ENTRIES,
    },
    "example": {
        "signature": (("EXAMPLE.md",),),
        "entries": ("EXAMPLE.md", "model", "tasks", "bench.yaml"),
    },
    "tasks": {  # a task collection written by `liftpeft tasks from-datasets` (its task folders are
        # listed in the marker when written)
        "signature": (("tasks.json",),),
        "entries": ("tasks.json",),
    },
}


LABELS = {
    "prior": "meta-trained state",
    "adapter": "adapter",
    "bench": "results directory",
    "report": "report",
    "example": "example workspace",
    "tasks": "task collection",
}


def _a(label: str) -> str:
    return f"{'an' if label[0] in 'aeiou' else 'a'} {label}"


class OutputError(ValueError):
    """An output directory that cannot be used as asked (nothing in it was changed)."""


@dataclass
class OutputDir:
    """A claimed output directory: ``path`` holds (or will hold) a liftpeft artefact of ``kind``.

    Use it as a context manager around the work: if the work fails before anything was written,
    the directory is left as it was found (a directory the claim created is removed again).
    """

    path: Path
    kind: str
    existed: bool  # True when it already held an artefact of this kind (kept for ``resume``)
    created: bool = False  # True when the claim created the directory
    stale: tuple[str, ...] = ()  # the old artefact's entries, removed once ``build`` has published

    def __fspath__(self) -> str:
        return str(self.path)

    def __enter__(self) -> OutputDir:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None or _owned(self.path, self.kind):
            return
        (self.path / MARKER).unlink(missing_ok=True)
        if self.created:
            with contextlib.suppress(OSError):
                self.path.rmdir()  # only if empty: never remove anything else

    @contextlib.contextmanager
    def build(self) -> Iterator[Path]:
        """A temporary folder inside ``path``; on success its entries replace their namesakes in
        ``path`` (each by one rename), on failure it is removed and ``path`` is as it was."""
        tmp = Path(tempfile.mkdtemp(dir=self.path, prefix=_BUILD_PREFIX))
        try:
            yield tmp
            for item in tmp.rglob("*"):  # libraries write some files 0600 (safetensors): the usual mode
                if item.is_file() and not item.is_symlink():
                    usual_mode(item)
            names = sorted(p.name for p in tmp.iterdir())
            _write_marker(self.path, self.kind, extra=names)
            # the identifying file last, so an interrupted publish is never mistaken for a whole one
            signature = KINDS[self.kind]["signature"][0][0]
            for name in sorted(names, key=lambda n: n == signature):
                target = self.path / name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                os.replace(tmp / name, target)
            _remove(self.path, [n for n in self.stale if n not in names])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _remove(path: Path, names: list[str]) -> None:
    for name in names:
        target = path / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()


def _write_marker(path: Path, kind: str, extra: list[str] | None = None) -> None:
    entries = list(KINDS[kind]["entries"])
    marker = path / MARKER
    if marker.is_file():
        with contextlib.suppress(OSError, ValueError):
            entries += [n for n in json.loads(marker.read_text()).get("entries", []) if n not in entries]
    entries += [n for n in extra or [] if n not in entries]
    record = {"format": MARKER_FORMAT, "kind": kind, "entries": entries, "liftpeft_version": __version__}
    with contextlib.suppress(OSError, ValueError):
        if json.loads(marker.read_text()) == record:
            return  # unchanged: a resumed run rewrites nothing
    atomic_write_json(marker, record)


def read_kind(path: str | os.PathLike) -> str | None:
    """The kind of liftpeft artefact in ``path`` (from its marker or signature file), else None."""
    path = Path(path)
    marker = path / MARKER
    if marker.is_file():
        try:
            data = json.loads(marker.read_text())
        except (OSError, ValueError):
            return None
        kind = data.get("kind") if isinstance(data, dict) else None
        return kind if kind in KINDS else None
    for kind, spec in KINDS.items():
        if any(all((path / n).is_file() for n in names) for names in spec["signature"]):
            return kind
    return None


def _owned(path: Path, kind: str) -> list[str]:
    """Entries of ``path`` that the ``kind`` artefact there owns (marker list, else the kind's table)."""
    names: list[str] = list(KINDS[kind]["entries"])
    marker = path / MARKER
    if marker.is_file():
        with contextlib.suppress(OSError, ValueError):
            listed = json.loads(marker.read_text()).get("entries", [])
            names = [n for n in listed if isinstance(n, str) and "/" not in n and n not in ("", ".", "..")]
    return [n for n in names if (path / n).exists() or (path / n).is_symlink()]


def _visible(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name != MARKER and not p.name.startswith(_BUILD_PREFIX))


def claim_output(
    path: str | os.PathLike,
    kind: str,
    *,
    overwrite: bool = False,
    resume: bool = False,
    can_resume: bool = False,
    check_only: bool = False,
    publish: bool = False,
    flag: str = "--out",
) -> OutputDir:
    """Check ``path`` may receive a ``kind`` artefact, prepare it, and return it (see module doc).

    ``resume`` keeps an existing artefact of the same kind as it is (the writer continues it);
    ``overwrite`` removes that artefact's own entries first. ``can_resume`` only shapes the advice
    given when neither is passed. ``check_only`` runs the checks and changes nothing (to refuse
    before long work). ``publish``: the writer builds its whole artefact with ``OutputDir.build``,
    so with ``overwrite`` the old artefact stays until the new one is complete (then its remaining
    entries are removed); without it, ``overwrite`` removes them now, for writers that work in place.
    Raises ``OutputError`` (nothing changed) when refused.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}; known: {sorted(KINDS)}")
    if overwrite and resume:
        raise OutputError("--overwrite and --resume contradict each other; pass one of them")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {path} is a file, not a directory; give a directory path")
    existed = False
    stale: list[str] = []
    if path.is_dir():
        for leftover in path.glob(f"{_BUILD_PREFIX}*"):  # left by a killed run of ours
            if read_kind(path) is not None and not check_only:
                shutil.rmtree(leftover, ignore_errors=True)
        visible = _visible(path)
        found = read_kind(path)
        if visible and found is None:
            shown = ", ".join(visible[:3]) + (", ..." if len(visible) > 3 else "")
            raise OutputError(
                f"{flag} {path} is not empty ({shown}) and holds no liftpeft {LABELS[kind]}; "
                "give a new or empty directory (nothing in it was changed)"
            )
        if found is not None and found != kind:
            raise OutputError(
                f"{flag} {path} holds liftpeft's {LABELS[found]}, not {_a(LABELS[kind])}; give another directory "
                "(nothing in it was changed)"
            )
        if found == kind and _owned(path, kind):
            existed = True
            if overwrite and (check_only or publish):
                stale = _owned(path, kind)
            elif overwrite:
                _remove(path, _owned(path, kind))
                existed = False
            elif not resume:
                advice = "pass --overwrite to replace it" + (
                    " or --resume to continue it" if can_resume else ""
                )
                raise OutputError(
                    f"{flag} {path} already holds a liftpeft {LABELS[kind]}; {advice} (nothing in it was changed)"
                )
    if check_only:
        return OutputDir(path, kind, existed)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    _write_marker(path, kind)
    return OutputDir(path, kind, existed, created, tuple(stale))
