"""Atomic writes: an artefact is either the old one or the complete new one, never half-written.

Files are written to a temporary sibling and renamed over the target (``os.replace`` is atomic on
POSIX within one file system). Directories are built in a temporary sibling and swapped in.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def usual_mode(path: str | os.PathLike, directory: bool = False) -> None:
    """Give a temporary (created 0600 / 0700) the mode any other file of the user gets."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        usual_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory; on success it replaces ``path`` as a whole.

    If the body raises (a full disk, an interrupt), ``path`` keeps its previous content and the
    temporary directory is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    usual_mode(tmp, directory=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_tensors(tensors: dict[str, Any], path: str | os.PathLike) -> Path:
    """``safetensors`` ``save_file`` with the usual file mode (it creates files 0600)."""
    from safetensors.torch import save_file

    save_file(tensors, str(path))
    usual_mode(path)
    return Path(path)


def write_tensors_with_json(
    folder: str | os.PathLike,
    tensors_name: str,
    json_name: str,
    tensors: dict[str, Any],
    meta: Callable[[str], dict[str, Any]],
) -> Path:
    """Write ``tensors`` to ``folder/tensors_name`` and ``meta(sha256 of that file)`` to
    ``folder/json_name``: both to temporaries first, then two renames, the JSON last. A crash leaves
    the previous pair, or a JSON whose hash does not match the tensors -- never a silent torn pair."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp_tensors, tmp_json = folder / f".{tensors_name}.tmp", folder / f".{json_name}.tmp"
    try:
        save_tensors(tensors, tmp_tensors)
        text = json.dumps(meta(sha256_file(tmp_tensors)), indent=1, sort_keys=True, default=str) + "\n"
        tmp_json.write_text(text, encoding="utf-8")
        usual_mode(tmp_json)
        os.replace(tmp_tensors, folder / tensors_name)
        os.replace(tmp_json, folder / json_name)
    except BaseException:
        tmp_tensors.unlink(missing_ok=True)
        tmp_json.unlink(missing_ok=True)
        raise
    return folder
