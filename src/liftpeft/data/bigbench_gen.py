"""BIG-bench generative (text-to-text) tasks read from the ``bigbench`` source package.

The same sdist as ``bigbench-cls`` (``pip download --no-deps bigbench==1.0.0``), streamed, never
unpacked. The rules, all set by ``BigBenchGenConfig`` (the shipped values are in
``configs/bench/bigbench-gen.yaml``, ``settings.data``), in the order they are applied:

1. **Task files.** Only the configured ``families`` (top-level task folders) are read. Every subtask
   ``<family>/<subtask>/task.json`` is a task named ``<family>.<subtask>``; a family's own
   ``task.json`` is a task only if it holds examples. Names matching an ``exclude_tasks`` pattern
   (``fnmatch``) are skipped, e.g. list_functions' ``NN_shot_baseline`` subtasks, which mix all 250
   functions into one few-shot prompt.
2. **Examples.** Kept: a non-blank string ``input`` and a ``target`` that is a non-blank string or a
   list whose first entry is one; the **reference is the first listed target** (BIG-bench lists
   alternatives in natural_instructions). ``target_scores`` (arithmetic also has them) is ignored.
   Exact duplicates (same input and reference) are kept once. A task whose examples are exactly
   those of a task earlier by name is dropped (mult_data_wrangling's ``<name>_1`` / ``<name>_2``
   differ only in BIG-bench's prompt decorations, which are not used here). With ``prepend_task_prefix`` the
   task's ``task_prefix`` is put before the input. The model's text is ``prompt_template`` with
   ``{input}`` filled in; the target is the reference itself (the tokenizer's end-of-sequence token is
   appended by the objective, so an exact match must also stop).
3. **Per-task split** (examples shuffled by a seed from a stable hash of the task name): a task with
   at least ``n_train + n_dev + min_test`` examples is ``n_train`` support / ``n_dev`` dev /
   ``max_test`` query at most (32 / 32 / up to 64 by default: arithmetic, linguistic_mappings,
   natural_instructions); a smaller task with at least ``small_n_train + min_test`` examples is
   ``small_n_train`` support / no dev / the rest as query (16 / 0 / 16 for the 32-example subtasks of
   list_functions and mult_data_wrangling); smaller tasks are dropped.
4. **Task filter**: median support input at most ``max_median_input_chars`` characters and median
   support reference at most ``max_median_target_chars`` (support split only).
5. **Meta split.** Families in ``held_out_families`` go to meta-test whole (a new family). Within
   every other family, tasks are ordered by a stable hash of ``<split_salt>/<task>`` and cut at the
   ``meta_split`` fractions, so each family has tasks on every side.

No rule looks at dev or query examples beyond their count. Parsed collections are cached under
``cache_dir()/tasks/bigbench-gen-<version>-<hash of the config>/{train,dev,test}/`` with a
``manifest.json`` (the resolved config, every drop reason and the split per family).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import logging
import math
import os
import random
import statistics
import tarfile
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from liftpeft.atomic import atomic_directory, atomic_write_json
from liftpeft.data.bigbench import fetch_bigbench, stable_hash
from liftpeft.data.bigbench_config import META_SPLITS
from liftpeft.data.cache import cache_dir
from liftpeft.tasks.jsonl import read_task, write_task_collection
from liftpeft.tasks.schema import PairExample, Task

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when parsing changes: it is part of the cache folder name
_TASKS_DIR = ("bigbench", "benchmark_tasks")
CHAT_PROMPT = "<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n"


def _help(text: str, **kwargs: Any) -> Any:
    return field(metadata={"help": text}, **kwargs)


@dataclass(frozen=True)
class BigBenchGenConfig:
    """Rules that turn BIG-bench's generative families into train / dev / test text-to-text tasks."""

    version: str = _help("bigbench sdist version on the package registry", default="1.0.0")
    families: tuple[str, ...] = _help(
        "top-level BIG-bench task folders to read",
        default=(
            "arithmetic",
            "linguistic_mappings",
            "list_functions",
            "mult_data_wrangling",
            "natural_instructions",
        ),
    )
    exclude_tasks: tuple[str, ...] = _help(
        "fnmatch patterns of task names (<family>.<subtask>) to skip",
        default=("list_functions.*_shot_baseline",),
    )
    prepend_task_prefix: bool = _help("put the task_prefix before every input", default=False)
    prompt_template: str = _help(
        "the model's input text; {input} is the example's input", default=CHAT_PROMPT
    )
    n_train: int = _help("support examples of a large task", default=32)
    n_dev: int = _help("dev examples of a large task", default=32)
    max_test: int = _help("cap on query examples", default=64)
    min_test: int = _help("query examples a task needs", default=16)
    small_n_train: int = _help(
        "support examples of a task too small for n_train + n_dev + min_test", default=16
    )
    max_median_input_chars: int | None = _help(
        "drop a task whose median support input is longer", default=1000
    )
    max_median_target_chars: int | None = _help(
        "drop a task whose median support reference is longer", default=200
    )
    held_out_families: tuple[str, ...] = _help(
        "families that go to meta-test whole", default=("linguistic_mappings",)
    )
    meta_split: Mapping[str, float] = _help(
        "fractions of each other family's tasks in meta-train / meta-dev / meta-test",
        default_factory=lambda: {"train": 0.6, "dev": 0.1, "test": 0.3},
    )
    split_salt: str = _help(
        "salt of the stable hash ordering tasks for the meta split", default="liftpeft-bigbench-gen-v1"
    )

    def __post_init__(self) -> None:
        for name in ("n_train", "n_dev", "max_test", "min_test", "small_n_train"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "n_dev" else 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("max_median_input_chars", "max_median_target_chars"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1 or null for no limit, got {value!r}")
        if self.small_n_train > self.n_train:
            raise ValueError(f"small_n_train={self.small_n_train} must not exceed n_train={self.n_train}")
        for name in ("families", "exclude_tasks", "held_out_families"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{name} must be a list of strings, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        unknown = sorted(set(self.held_out_families) - set(self.families))
        if unknown:
            raise ValueError(f"held_out_families {unknown} are not among families {list(self.families)}")
        if not isinstance(self.prompt_template, str) or "{input}" not in self.prompt_template:
            raise ValueError("prompt_template must be a string holding {input}, e.g. '{input}\\nAnswer:'")
        if not isinstance(self.prepend_task_prefix, bool):
            raise ValueError(f"prepend_task_prefix must be true or false, got {self.prepend_task_prefix!r}")
        object.__setattr__(self, "meta_split", _check_fractions(self.meta_split))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for name in ("families", "exclude_tasks", "held_out_families"):
            out[name] = list(out[name])
        out["meta_split"] = dict(self.meta_split)
        return out

    def fingerprint(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]

    @classmethod
    def from_value(cls, value: BigBenchGenConfig | Mapping[str, Any] | None) -> BigBenchGenConfig:
        """A config from None (the defaults), a mapping (unknown keys refused) or a config."""
        if isinstance(value, cls):
            return value
        if value is None:
            return cls()
        if not isinstance(value, Mapping):
            raise ValueError(
                f"the bigbench-gen data setting must be a mapping of rules, got {type(value).__name__}"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"bigbench-gen data rules have no key(s) {unknown}; allowed: {sorted(known)}")
        return cls(**value)


def _check_fractions(fractions: Any) -> dict[str, float]:
    if not isinstance(fractions, Mapping) or set(fractions) != set(META_SPLITS):
        raise ValueError(f"meta_split must map exactly train, dev, test to fractions, got {fractions!r}")
    out = {k: fractions[k] for k in META_SPLITS}
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in out.values()):
        raise ValueError(f"meta_split values must be fractions in [0, 1], got {out}")
    if not math.isclose(sum(out.values()), 1.0, abs_tol=1e-6) or out["train"] == 0:
        raise ValueError(f"meta_split fractions must sum to 1 with a non-zero train fraction, got {out}")
    return {k: float(v) for k, v in out.items()}


# ----------------------------------------------------------------------------- parsing


@dataclass
class GenSource:
    """One ``task.json``: its references ``(input, target)`` and why examples were dropped."""

    name: str
    family: str
    pairs: list[tuple[str, str]]
    n_examples: int
    dropped: Counter = field(default_factory=Counter)


def reference_target(target: Any) -> str | None:
    """The reference of a BIG-bench ``target``: the string itself, or a list's first entry."""
    if isinstance(target, list):
        target = target[0] if target else None
    if not isinstance(target, str) or not target.strip():
        return None
    return target.strip()


def parse_generative_spec(
    name: str, family: str, spec: Mapping[str, Any], config: BigBenchGenConfig
) -> GenSource:
    """The usable ``(input, reference)`` pairs of one task.json (rule 2 of the module doc)."""
    raw = spec.get("examples")
    raw = raw if isinstance(raw, list) else []
    prefix = spec.get("task_prefix") if config.prepend_task_prefix else ""
    prefix = prefix.strip() if isinstance(prefix, str) else ""
    source = GenSource(name, family, [], len(raw))
    seen: set[tuple[str, str]] = set()
    for example in raw:
        if not isinstance(example, dict) or "target" not in example:
            source.dropped["no target"] += 1
            continue
        text, target = example.get("input"), reference_target(example["target"])
        if not isinstance(text, str) or not text.strip():
            source.dropped["empty input"] += 1
            continue
        if target is None:
            source.dropped["empty target"] += 1
            continue
        text = text.strip() if not prefix else f"{prefix}\n{text.strip()}"
        if (text, target) in seen:
            source.dropped["duplicate"] += 1
            continue
        seen.add((text, target))
        source.pairs.append((text, target))
    return source


def _task_path(member: str) -> tuple[str, ...] | None:
    """``(<family>, [<subtask>,] task.json)`` for a member under bigbench/benchmark_tasks, else None."""
    parts = PurePosixPath(member).parts
    for i in range(len(parts) - 1):
        if parts[i : i + 2] == _TASKS_DIR:
            rest = parts[i + 2 :]
            return rest if len(rest) in (2, 3) and rest[-1] == "task.json" else None
    return None


def read_generative_sources(archive: str | os.PathLike, config: BigBenchGenConfig) -> list[GenSource]:
    """Stream the configured families' task.json files out of ``archive`` (a .tar.gz) or a folder."""
    sources = []
    for rest, spec in _iter_specs(Path(archive), set(config.families)):
        family = rest[0]
        name = ".".join(rest[:-1])
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in config.exclude_tasks):
            continue
        if isinstance(spec, dict) and isinstance(spec.get("examples"), list):
            sources.append(parse_generative_spec(name, family, spec, config))
    return sorted(sources, key=lambda s: s.name)


def _iter_specs(archive: Path, families: set[str]):
    """``(path parts, parsed JSON)`` of every task.json of ``families`` in a tar.gz or a folder."""
    if archive.is_dir():  # an unpacked benchmark_tasks tree (tests, hand-made pools)
        for path in sorted(archive.rglob("task.json")):
            rest = _task_path(path.relative_to(archive).as_posix())
            if rest is not None and rest[0] in families:
                yield rest, _load_json(path.read_bytes(), path)
        return
    with tarfile.open(archive, mode="r|gz") as tar:
        for member in tar:
            rest = _task_path(member.name)
            if rest is None or rest[0] not in families or not member.isfile():
                continue
            yield rest, _load_json(tar.extractfile(member).read(), member.name)


def _load_json(data: bytes, where: Any) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        logger.warning("skipping unreadable %s: %s", where, err)
        return None


# ----------------------------------------------------------------------------- tasks


def split_generative_task(source: GenSource, config: BigBenchGenConfig) -> Task | str:
    """The task of ``source`` split into support / dev / query (rule 3), or why it is dropped."""
    pairs = list(source.pairs)
    random.Random(stable_hash(f"examples/{source.name}")).shuffle(pairs)
    n = len(pairs)
    if n >= config.n_train + config.n_dev + config.min_test:
        n_train, n_dev = config.n_train, config.n_dev
    elif n >= config.small_n_train + config.min_test:
        n_train, n_dev = config.small_n_train, 0
    else:
        return f"{n} usable examples < small_n_train + min_test = {config.small_n_train + config.min_test}"
    examples = [PairExample(config.prompt_template.format(input=text), target) for text, target in pairs]
    return Task(
        source.name,
        "text2text",
        train=examples[:n_train],
        dev=examples[n_train : n_train + n_dev],
        test=examples[n_train + n_dev : n_train + n_dev + config.max_test],
    )


def _length_reason(task: Task, config: BigBenchGenConfig) -> str | None:
    """Why the length filter (rule 4, support split only) drops ``task``, or None."""
    overhead = len(config.prompt_template.format(input=""))
    for limit, lengths, what in (
        (config.max_median_input_chars, [len(e.input) - overhead for e in task.train], "input"),
        (config.max_median_target_chars, [len(e.target) for e in task.train], "reference"),
    ):
        median = statistics.median(lengths)
        if limit is not None and median > limit:
            return f"median support {what} {median:g} characters > {limit}"
    return None


def assign_generative_meta_splits(tasks: list[Task], family_of: dict[str, str], config: BigBenchGenConfig):
    """Task name -> meta split (rule 5): held-out families to test, the others cut within family."""
    out: dict[str, str] = {}
    by_family: dict[str, list[str]] = defaultdict(list)
    for task in tasks:
        by_family[family_of[task.name]].append(task.name)
    for family, names in by_family.items():
        if family in config.held_out_families:
            out.update(dict.fromkeys(names, "test"))
            continue
        names.sort(key=lambda n: (stable_hash(f"{config.split_salt}/{n}"), n))
        cuts, running = [], 0.0
        for split in META_SPLITS:
            running += config.meta_split[split]
            cuts.append((running, split))
        for i, name in enumerate(names):
            middle = (i + 0.5) / len(names)
            out[name] = next((s for cut, s in cuts if middle < cut), META_SPLITS[-1])
    return out


def build_bigbench_gen(
    archive: str | os.PathLike, config: BigBenchGenConfig | Mapping[str, Any] | None = None
) -> tuple[dict[str, list[Task]], dict[str, Any]]:
    """Parse ``archive`` (the bigbench sdist, or an unpacked tree) into meta splits and a report."""
    config = BigBenchGenConfig.from_value(config)
    sources = read_generative_sources(archive, config)
    report: dict[str, Any] = {
        "examples_dropped": {s.name: dict(s.dropped) for s in sources if s.dropped},
        "dropped": {},
    }
    tasks, family_of = [], {}
    first_with: dict[frozenset, str] = {}
    for source in sources:
        same = first_with.setdefault(frozenset(source.pairs), source.name)
        if same != source.name:  # e.g. mult_data_wrangling's <name>_1 / <name>_2 differ only in the prompt
            report["dropped"][source.name] = f"same examples as {same}"
            continue
        task = split_generative_task(source, config)
        reason = task if isinstance(task, str) else _length_reason(task, config)
        if reason:
            report["dropped"][source.name] = reason
            continue
        tasks.append(task)
        family_of[task.name] = source.family
    meta = assign_generative_meta_splits(tasks, family_of, config)
    splits: dict[str, list[Task]] = {s: [] for s in META_SPLITS}
    for task in tasks:
        splits[meta[task.name]].append(task)
    report["meta_split"] = {s: [t.name for t in splits[s]] for s in META_SPLITS}
    report["per_family"] = _family_summary(tasks, family_of, meta)
    logger.info("BIG-bench generative meta split: %s", {s: len(v) for s, v in splits.items()})
    return splits, report


def _family_summary(tasks: list[Task], family_of: dict[str, str], meta: dict[str, str]) -> dict[str, Any]:
    """Per family: tasks per meta split and the per-task (support, dev, query) sizes that occur."""
    out: dict[str, Any] = {}
    for task in tasks:
        entry = out.setdefault(family_of[task.name], {"tasks": Counter(), "splits": Counter()})
        entry["tasks"][meta[task.name]] += 1
        entry["splits"][f"{len(task.train)}/{len(task.dev)}/{len(task.test)}"] += 1
    return {f: {k: dict(v) for k, v in e.items()} for f, e in sorted(out.items())}


def per_family(tasks: list[Task], limit: int) -> list[Task]:
    """The first ``limit`` tasks of each family by name (family: the name before the first dot)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"max_dev_tasks_per_family must be an integer >= 1 (or unset), got {limit!r}")
    kept: Counter = Counter()
    out = []
    for task in sorted(tasks, key=lambda t: t.name):
        family = task.name.split(".")[0]
        if kept[family] < limit:
            kept[family] += 1
            out.append(task)
    return out


# ----------------------------------------------------------------------------- cache


def bigbench_gen_folder(config: BigBenchGenConfig | Mapping[str, Any] | None = None) -> Path:
    config = BigBenchGenConfig.from_value(config)
    key = stable_hash(f"{config.fingerprint()}/format{FORMAT_VERSION}")
    return cache_dir() / "tasks" / f"bigbench-gen-{config.version}-{key:016x}"


def load_bigbench_gen(
    config: BigBenchGenConfig | Mapping[str, Any] | None = None, cache: bool = True
) -> dict[str, list[Task]]:
    """Meta-train / meta-dev / meta-test generative tasks keyed by meta split (parsed once, then cached)."""
    config = BigBenchGenConfig.from_value(config)
    folder = bigbench_gen_folder(config)
    manifest = folder / "manifest.json"
    if cache and manifest.is_file():
        names = json.loads(manifest.read_text(encoding="utf-8"))["report"]["meta_split"]
        return {s: [read_task(folder / s / n) for n in names[s]] for s in META_SPLITS}
    splits, report = build_bigbench_gen(fetch_bigbench(config.version), config)
    if cache:
        with atomic_directory(folder) as tmp:
            for split, tasks in splits.items():
                (tmp / split).mkdir(parents=True, exist_ok=True)
                write_task_collection(tasks, tmp / split)
            record = {"format_version": FORMAT_VERSION, "config": config.to_dict(), "report": report}
            atomic_write_json(tmp / "manifest.json", record)
        logger.info("BIG-bench generative pool cached in %s", folder)
    return splits
