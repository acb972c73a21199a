"""Adapters named by Hugging Face Hub id: fetched with ``huggingface_hub.snapshot_download``.

``resolve_adapter_source(ref)`` returns a local folder for ``ref``: ``ref`` itself if it exists,
else the Hub snapshot of ``owner/name`` (an adapter repository, or one holding adapters in
sub-folders: a zoo), ``owner/name/sub/folder`` (one folder of it) or ``owner/name@revision``. Only
the adapter files are fetched (``adapter_config.json``, ``adapter_model.safetensors``,
``liftpeft.json``, ``README.md``); the snapshot's path holds the commit, so a prior records exactly
which adapters it was fitted on. Offline (``HF_HUB_OFFLINE=1``), the local Hub cache is used.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "liftpeft.json", "README.md")
_HUB_REF = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?P<sub>(/[\w.-]+)*)(@(?P<rev>[\w./-]+))?$")


def resolve_adapter_source(ref: str | os.PathLike) -> Path:
    """A local folder for an adapter path or Hub id (see the module doc); ``FileNotFoundError`` if neither."""
    path = Path(ref).expanduser()
    if path.exists():
        return path
    match = _HUB_REF.match(str(ref))
    if match is None:
        raise FileNotFoundError(f"{ref} does not exist (and is not a Hub id like owner/name); check the path")
    from huggingface_hub import snapshot_download

    sub = match["sub"].strip("/")
    prefix = f"{sub}/" if sub else ""
    patterns = [f"{prefix}{name}" for name in ADAPTER_FILES] + [f"{prefix}*/{name}" for name in ADAPTER_FILES]
    try:
        folder = snapshot_download(match["repo"], revision=match["rev"], allow_patterns=patterns)
    except Exception as err:
        raise FileNotFoundError(
            f"{ref} is neither a local folder nor a Hub repository that could be fetched "
            f"({type(err).__name__}); check the name, or go online (HF_HUB_OFFLINE=0)"
        ) from err
    return Path(folder) / sub if sub else Path(folder)
