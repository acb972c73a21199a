"""Configuration of the BIG-bench classification task pool (``configs/bigbench_cls.yaml``).

The packaged YAML file is the pre-registered rule set; ``load_bigbench_config`` reads it (or a
file / mapping given by the user), checks every value and returns a frozen ``BigBenchClsConfig``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

META_SPLITS = ("train", "dev", "test")
DEFAULT_CONFIG_NAME = "bigbench_cls.yaml"


def _help(text: str, **kwargs: Any) -> Any:
    return field(metadata={"help": text}, **kwargs)


@dataclass(frozen=True)
class BigBenchClsConfig:
    """Rules that turn the BIG-bench sdist into train / dev / test task collections."""

    version: str = _help("bigbench sdist version on the package registry", default="1.0.0")
    n_train: int = _help("training examples per task", default=32)
    n_dev: int = _help("dev examples per task", default=32)
    max_test: int = _help("cap on test examples per task (the rest after train, dev)", default=256)
    min_examples: int = _help("usable examples a task needs to be kept", default=64)
    min_test_examples: int = _help("test examples a task needs to be kept", default=32)
    prepend_task_prefix: bool = _help("prepend the task_prefix to every input", default=False)
    exclude_keywords: tuple[str, ...] = _help(
        "task.json keywords that mark a task as not English",
        default=("non-English", "multilingual", "translation", "low-resource language"),
    )
    max_non_latin_fraction: float = _help(
        "drop a task if more of its training letters are outside the Latin script", default=0.2
    )
    max_options: int | None = _help(
        "drop a task with a training example with more options (None: no limit)", default=10
    )
    max_median_input_chars: int | None = _help(
        "drop a task whose median training input is longer (characters)", default=1000
    )
    max_subtasks_per_task: int | None = _help("subtasks kept per parent (None: all)", default=3)
    meta_split: Mapping[str, float] = _help(
        "fractions of tasks in meta-train / meta-dev / meta-test",
        default_factory=lambda: {"train": 0.6, "dev": 0.1, "test": 0.3},
    )
    split_salt: str = _help(
        "salt of the stable hash that orders tasks for the meta split", default="liftpeft-bigbench-cls-v1"
    )

    def __post_init__(self) -> None:
        for name in ("n_train", "n_dev", "max_test", "min_examples", "min_test_examples"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("max_options", "max_median_input_chars", "max_subtasks_per_task"):
            value = getattr(self, name)
            if value is not None:
                _check_int(
                    name, value, minimum=2 if name == "max_options" else 1, hint="or null for no limit"
                )
        if self.min_examples < self.n_train + self.n_dev:
            raise ValueError(
                f"min_examples={self.min_examples} is smaller than n_train + n_dev = "
                f"{self.n_train + self.n_dev}; raise min_examples or lower n_train / n_dev"
            )
        if not isinstance(self.version, str) or not self.version:
            raise ValueError(f"version must be a string such as '1.0.0', got {self.version!r}")
        if not isinstance(self.prepend_task_prefix, bool):
            raise ValueError(f"prepend_task_prefix must be true or false, got {self.prepend_task_prefix!r}")
        keywords = self.exclude_keywords
        if isinstance(keywords, str) or not all(isinstance(k, str) for k in keywords):
            raise ValueError(f"exclude_keywords must be a list of strings, got {keywords!r}")
        object.__setattr__(self, "exclude_keywords", tuple(keywords))
        if not _is_fraction(self.max_non_latin_fraction):
            raise ValueError(
                f"max_non_latin_fraction must be a number in [0, 1], got {self.max_non_latin_fraction!r}"
            )
        object.__setattr__(self, "meta_split", _check_meta_split(self.meta_split))
        if not isinstance(self.split_salt, str):
            raise ValueError(f"split_salt must be a string, got {self.split_salt!r}")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["exclude_keywords"] = list(self.exclude_keywords)
        out["meta_split"] = dict(self.meta_split)
        return out

    def fingerprint(self) -> str:
        """A short hash of every value; names the cache folder of the parsed pool."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def _check_int(name: str, value: Any, minimum: int, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        extra = f" ({hint})" if hint else ""
        raise ValueError(f"{name} must be an integer >= {minimum}{extra}, got {value!r}")


def _is_fraction(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0 <= value <= 1


def _check_meta_split(fractions: Any) -> dict[str, float]:
    if not isinstance(fractions, Mapping) or set(fractions) != set(META_SPLITS):
        raise ValueError(
            f"meta_split must map exactly the keys train, dev, test to fractions, got {fractions!r}"
        )
    out = {}
    for key in META_SPLITS:
        value = fractions[key]
        if not _is_fraction(value):
            raise ValueError(f"meta_split.{key} must be a fraction in [0, 1], got {value!r}")
        out[key] = float(value)
    if not math.isclose(sum(out.values()), 1.0, abs_tol=1e-6):
        total = sum(out.values())
        raise ValueError(f"meta_split fractions must sum to 1, got {out} (sum {total:g})")
    if out["train"] == 0 or out["test"] == 0:
        raise ValueError("meta_split needs a non-zero train and test fraction")
    return out


ConfigLike = BigBenchClsConfig | Mapping[str, Any] | str | os.PathLike | None


def default_config_path() -> Path:
    """The packaged, pre-registered config file."""
    return Path(str(resources.files("liftpeft").joinpath("configs", DEFAULT_CONFIG_NAME)))


def load_bigbench_config(config: ConfigLike = None) -> BigBenchClsConfig:
    """Resolve ``config``: None (the packaged YAML), a YAML path, a mapping, or a config object.

    Unknown keys and bad values raise ``ValueError`` naming the key and what is allowed.
    """
    if isinstance(config, BigBenchClsConfig):
        return config
    source = "mapping"
    if config is None or isinstance(config, (str, os.PathLike)):
        path = default_config_path() if config is None else Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"BIG-bench config file {path} does not exist")
        source = str(path)
        with path.open(encoding="utf-8") as handle:
            config = yaml.safe_load(handle) or {}
    if not isinstance(config, Mapping):
        raise ValueError(f"{source}: a BIG-bench config must be a mapping of keys to values")
    known = {f.name for f in dataclasses.fields(BigBenchClsConfig)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown}; allowed keys are {sorted(known)}")
    try:
        return BigBenchClsConfig(**config)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None
