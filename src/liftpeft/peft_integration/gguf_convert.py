"""Convert a GGUF checkpoint into a plain ``transformers`` model directory (safetensors, no quantisation).

``transformers`` reads a GGUF file (``from_pretrained(folder, gguf_file=...)``, needs the ``gguf``
package) by de-quantising every tensor; doing that at every load would tie each run to the GGUF
reader. ``convert_gguf`` does it once: it rebuilds the model class the file maps to (for
SmolLM2: ``LlamaForCausalLM``) from a clean config (no ``quantization_config``), loads the
de-quantised state dict into it strictly, and saves ``config.json``, ``model.safetensors`` (in
``dtype``, float32 by default) and the tokenizer files. Later loads read only that directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from liftpeft.atomic import atomic_directory, atomic_write_json, sha256_file
from liftpeft.peft_integration.backbone import _quiet_transformers

CONVERSION_FILE = "liftpeft_conversion.json"
_DROP_CONFIG_KEYS = ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version")


def _require_gguf() -> None:
    try:
        import gguf  # noqa: F401
    except ImportError as err:
        raise ModuleNotFoundError(
            "reading a GGUF checkpoint needs the gguf package: pip install 'liftpeft[generative]'"
        ) from err


def load_gguf(gguf_file: str | os.PathLike, dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """``(model, tokenizer)`` de-quantised from ``gguf_file``; the model has a config free of GGUF traces."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _require_gguf()
    path = Path(gguf_file)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file {path} does not exist; give the path of a .gguf file")
    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
        data = {k: v for k, v in loaded.config.to_dict().items() if k not in _DROP_CONFIG_KEYS}
        config = type(loaded.config).from_dict(data)
        config.dtype = dtype
        torch.manual_seed(0)  # the fresh weights are all overwritten; seeded only for determinism
        model = type(loaded)(config).to(dtype)
        missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or ())
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise ValueError(
            f"the GGUF file {path.name} does not map onto {type(model).__name__}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}; convert it with a transformers version that supports it"
        )
    model.eval()
    return model, tokenizer


def convert_gguf(
    gguf_file: str | os.PathLike,
    out_dir: str | os.PathLike,
    dtype: torch.dtype = torch.float32,
    source: dict[str, Any] | None = None,
) -> Path:
    """Write the model of ``gguf_file`` to ``out_dir`` as safetensors + config + tokenizer (atomically).

    ``source`` (where the file came from) is saved with the GGUF file's SHA-256 in ``CONVERSION_FILE``.
    """
    import transformers

    model, tokenizer = load_gguf(gguf_file, dtype)
    record = {
        "gguf_file": Path(gguf_file).name,
        "gguf_sha256": sha256_file(gguf_file),
        "architecture": type(model).__name__,
        "dtype": str(dtype).replace("torch.", ""),
        "transformers_version": transformers.__version__,
        "source": source or {},
    }
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / CONVERSION_FILE, record)
    return Path(out_dir)


def is_converted(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a finished conversion (the record is written last)."""
    folder = Path(folder)
    return all((folder / name).is_file() for name in (CONVERSION_FILE, "config.json", "model.safetensors"))
