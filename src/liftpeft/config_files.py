"""Configuration files (YAML or TOML) for every command; command-line flags override them."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigFileError(ValueError):
    """A configuration file that cannot be used; the message names the file."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (YAML would keep the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} appears twice in one mapping; merge the two entries",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a mapping from a ``.yaml`` / ``.yml`` / ``.toml`` file (``-`` in keys becomes ``_``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigFileError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.load(text, Loader=_UniqueKeyLoader) or {}  # a SafeLoader subclass
        else:
            raise ConfigFileError(f"{path}: use a .yaml, .yml or .toml file")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as err:
        raise ConfigFileError(f"{path}: cannot parse ({err})") from None
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: the file must hold a mapping of settings, got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """``["k=5", "sigma=0.1"]`` -> ``{"k": 5, "sigma": 0.1}`` (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigFileError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return out
