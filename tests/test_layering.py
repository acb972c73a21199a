"""The import layering of ``liftpeft``: a module may import its own layer or lower ones, never higher.

Layers, lowest first:

0. ``core`` -- pure torch maths; imports nothing of liftpeft outside ``core``.
1. shared types (``objective``, ``problem``, ``metrics``) and the utilities that anything may import
   (``atomic``, ``outputs``, ``progress``, ``_version``, ``config_files``, ``learned_prior``,
   ``zoo_prior``, ``hub``, ``model_card``, the package ``__init__``).
2. ``tasks``, ``data``, ``peft_integration`` (the only place importing transformers / peft) and
   ``methods`` (which never import ``peft_integration`` or ``data``).
3. ``bench``, ``evaluation``.
4. ``api``, ``cli``, ``demo``, ``zoo``, ``__main__``.

Every import is checked, including the lazy ones inside functions.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "liftpeft"

# first component below ``liftpeft`` -> layer
LAYERS: dict[str, int] = {
    "core": 0,
    "objective": 1,
    "problem": 1,
    "metrics": 1,
    "atomic": 1,
    "outputs": 1,
    "progress": 1,
    "_version": 1,
    "config_files": 1,
    "learned_prior": 1,
    "zoo_prior": 1,
    "hub": 1,  # priors on the Hugging Face Hub (huggingface_hub, not transformers / peft)
    "model_card": 1,
    "scale": 1,  # sharded sampling over torch.distributed: core maths plus files and ranks
    "": 1,  # the package itself (liftpeft/__init__.py)
    "tasks": 2,
    "data": 2,
    "peft_integration": 2,
    "methods": 2,
    "service": 3,  # the run service: above methods, below its callers (api, cli, bench)
    "bench": 3,
    "evaluation": 3,
    "api": 4,
    "cli": 4,
    "demo": 4,
    "example": 4,
    "zoo": 4,
    "__main__": 4,
}

# same-layer imports that are still forbidden: importer area -> areas it must not import
FORBIDDEN_AREAS: dict[str, set[str]] = {
    "core": set(LAYERS) - {"core"},  # not even the utilities
    "methods": {"peft_integration", "data"},
    "tasks": {"peft_integration", "data", "methods"},
    "peft_integration": {"data", "methods"},
    "data": {"methods"},
    "service": {
        "peft_integration",
        "data",
        "bench",
        "evaluation",
    },  # it is handed problems, never builds them
}

HF_PACKAGES = {"transformers", "peft", "sentence_transformers", "tokenizers"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _area(module: str) -> str:
    """``liftpeft.methods.lift.trainer`` -> ``methods``; ``liftpeft`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, absolute module)`` of every import in ``path``, nested ones included."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "liftpeft" or (not node.level and node.module == "liftpeft"):
                # ``from liftpeft import methods`` imports the submodule ``liftpeft.methods``
                found += [(node.lineno, f"liftpeft.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, target))
    return found


def _all_imports() -> list[tuple[str, int, str]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        out += [(module, line, target) for line, target in _imports(path)]
    return out


def _liftpeft_target_area(target: str) -> str | None:
    if target == "liftpeft":
        return ""
    if target.startswith("liftpeft."):
        return _area(target)
    return None


def test_every_module_has_a_layer():
    unknown = sorted({_area(_module_name(p)) for p in PACKAGE.rglob("*.py")} - set(LAYERS))
    assert not unknown, f"modules with no layer in tests/test_layering.py: {unknown}"


def test_no_module_imports_a_higher_layer():
    offenders = []
    for module, line, target in _all_imports():
        target_area = _liftpeft_target_area(target)
        if target_area is None or target_area not in LAYERS:
            continue
        area = _area(module)
        if LAYERS[target_area] > LAYERS[area]:
            offenders.append(
                f"{module}:{line} imports {target} (layer {LAYERS[area]} -> {LAYERS[target_area]})"
            )
        elif target_area != area and target_area in FORBIDDEN_AREAS.get(area, set()):
            offenders.append(f"{module}:{line} imports {target} ({area} must not import {target_area})")
    assert not offenders, "upward or forbidden imports:\n" + "\n".join(offenders)


def test_only_peft_integration_imports_hugging_face():
    offenders = [
        f"{module}:{line} imports {target}"
        for module, line, target in _all_imports()
        if target.split(".")[0] in HF_PACKAGES and _area(module) != "peft_integration"
    ]
    assert not offenders, "Hugging Face imports outside liftpeft.peft_integration:\n" + "\n".join(offenders)


@pytest.mark.parametrize(
    ("area", "banned"),
    [
        ("core", ("transformers", "peft", "liftpeft.")),
        ("methods", ("liftpeft.peft_integration", "liftpeft.data", "transformers", "peft")),
    ],
)
def test_area_bans(area, banned):
    offenders = []
    for module, line, target in _all_imports():
        if _area(module) != area:
            continue
        for ban in banned:
            if ban == "liftpeft." and target.startswith("liftpeft.") and _area(target) == "core":
                continue
            if target == ban or target.startswith(ban if ban.endswith(".") else ban + "."):
                offenders.append(f"{module}:{line} imports {target}")
    assert not offenders, f"liftpeft.{area} must not import {banned}:\n" + "\n".join(offenders)


def test_importing_the_methods_loads_no_peft_layer():
    # A fresh interpreter: other tests in this process have imported transformers already.
    code = (
        "import sys, liftpeft.methods, liftpeft.problem, liftpeft.metrics, liftpeft.zoo_prior\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'transformers', 'peft', 'sentence_transformers'}"
        " or m.startswith(('liftpeft.peft_integration', 'liftpeft.data', 'liftpeft.evaluation', 'liftpeft.bench')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing liftpeft.methods pulled in: {out.stdout.strip()}"


def test_the_peft_layer_registers_the_default_embedder():
    code = (
        "import liftpeft.objective as o\n"
        "assert o._default_embedder_factory is None\n"
        "import liftpeft.peft_integration as p\n"
        "assert o._default_embedder_factory is p.sentence_embedder\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
