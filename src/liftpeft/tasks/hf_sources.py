"""Open a ``datasets`` source as named splits: an in-memory dataset, a local directory or file, a hub id.

``open_source`` returns ``{split name: Dataset or IterableDataset}``, always through ``datasets``' own
loaders (``load_from_disk`` for a ``save_to_disk`` directory, ``load_dataset`` for data files, a data
directory or a hub id), so revisions, tokens, caches and streaming behave as ``datasets`` documents.
``datasets`` is an optional dependency (``pip install 'liftpeft[hub]'``) imported only here, lazily.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

INSTALL_HINT = "pip install 'liftpeft[hub]'"
# file suffix -> the ``datasets`` builder that reads it (and its extra arguments)
FILE_BUILDERS: dict[str, tuple[str, dict[str, Any]]] = {
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t"}),
    ".parquet": ("parquet", {}),
    ".txt": ("text", {}),
}


class SourceError(ValueError):
    """A dataset source that cannot be opened; the message says what to do."""


def import_datasets():
    try:
        import datasets
    except ImportError as err:
        raise ModuleNotFoundError(f"tasks from `datasets` need the datasets package: {INSTALL_HINT}") from err
    return datasets


def describe_source(source: Any) -> str:
    """A short JSON-able description of ``source`` (for messages and the collection's manifest)."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"<{type(source).__name__} in memory>"


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _as_splits(loaded: Any, streaming: bool) -> dict[str, Any]:
    datasets = import_datasets()
    if isinstance(loaded, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        splits = dict(loaded)
    else:
        splits = {"train": loaded}
    if streaming:
        splits = {
            name: ds.to_iterable_dataset() if isinstance(ds, datasets.Dataset) else ds
            for name, ds in splits.items()
        }
    return splits


def open_source(
    source: Any,
    *,
    subset: str | None = None,
    streaming: bool = False,
    cache_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
) -> dict[str, Any]:
    """``{split: dataset}`` of ``source``.

    ``source``: a ``Dataset`` / ``IterableDataset`` (one split, ``train``), a ``DatasetDict`` /
    ``IterableDatasetDict``, a directory written by ``save_to_disk``, a data file (``.jsonl``,
    ``.json``, ``.csv``, ``.tsv``, ``.parquet``, ``.txt``), a directory of data files (split names
    from the file names, as ``load_dataset`` infers them), or a hub id (``subset``: its configuration
    name; ``revision`` and ``token`` are passed to ``load_dataset``). ``streaming`` gives
    ``IterableDataset`` s, so a large source is read only as far as needed.
    """
    datasets = import_datasets()
    in_memory = (
        datasets.Dataset,
        datasets.IterableDataset,
        datasets.DatasetDict,
        datasets.IterableDatasetDict,
    )
    if isinstance(source, in_memory):
        return _as_splits(source, streaming)
    if not isinstance(source, (str, os.PathLike)):
        raise SourceError(
            f"a dataset source must be a datasets.Dataset / DatasetDict, a path or a hub id, got "
            f"{type(source).__name__}"
        )
    common: dict[str, Any] = {"streaming": streaming}
    if cache_dir is not None:
        common["cache_dir"] = str(cache_dir)
    path = Path(source).expanduser()
    if path.is_dir() and _is_saved_dataset(path):
        return _as_splits(datasets.load_from_disk(str(path)), streaming)
    if path.is_file():
        if path.suffix.lower() not in FILE_BUILDERS:
            raise SourceError(
                f"{path}: cannot tell how to read a {path.suffix or 'suffix-less'} file; use one of "
                f"{', '.join(sorted(FILE_BUILDERS))} or a directory written by save_to_disk"
            )
        builder, extra = FILE_BUILDERS[path.suffix.lower()]
        loaded = datasets.load_dataset(builder, data_files={"train": str(path)}, **extra, **common)
        return _as_splits(loaded, streaming)
    if path.is_dir():
        try:
            return _as_splits(datasets.load_dataset(str(path), **common), streaming)
        except (ValueError, FileNotFoundError) as err:
            raise SourceError(
                f"{path}: datasets found no data files it can read there ({' '.join(str(err).split())[:160]}); "
                "give a directory of .jsonl / .csv / .parquet files or one written by save_to_disk"
            ) from err
    if path.is_absolute() or str(source).startswith((".", "~")) or str(source).count("/") > 1:
        raise SourceError(f"{source}: no such file or directory (and it is not a hub id); check the path")
    try:
        loaded = datasets.load_dataset(str(source), subset, revision=revision, token=token, **common)
    except Exception as err:  # datasets raises many kinds here (offline, not found, gated); say which
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
        why = "the hub is switched off (HF_HUB_OFFLINE=1)" if offline else " ".join(str(err).split())[:160]
        raise SourceError(
            f"could not load dataset {source!r} from the hub: {why}; pass a local path, or check the id, "
            "the subset and your access"
        ) from err
    return _as_splits(loaded, streaming)
