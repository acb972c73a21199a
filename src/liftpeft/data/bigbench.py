"""BIG-bench classification tasks (CrossFit style) read from the ``bigbench`` source package.

The sdist (``pip download --no-deps bigbench==1.0.0``, about 358 MB) holds every JSON task as
``bigbench/benchmark_tasks/<task>/task.json``; composite tasks keep theirs in subtask folders
``<task>/<subtask>/task.json``. Members are streamed out of the tar.gz; nothing is unpacked.
The rules, all set in ``configs/bigbench_cls.yaml`` (see ``BigBenchClsConfig``), in the order they
are applied:

1. **Task files.** Programmatic tasks (``task.py``, no ``task.json``) are skipped. Every subtask is
   a task of its own named ``<task>.<subtask>`` (subtasks are distinct datasets or formats, e.g.
   ``fact_checker.fever`` / ``fact_checker.politifact``); it inherits its parent's keywords. A
   composite parent's own ``task.json`` holds no examples and is not a task.
2. **Examples.** Kept: a string ``input`` that is not blank and a ``target_scores`` mapping
   option -> score (a string holding one is parsed with ``json`` then ``ast.literal_eval``). The
   label is the option with the highest score; examples where several options share the top score
   are dropped, as are those with fewer than 2 options, blank or duplicate options (after stripping
   whitespace) or non-numeric scores. Exact duplicates (same input and option set) are kept once;
   duplicates that disagree on the answer are all dropped. The input is the stripped ``input``; the
   task's ``task_prefix`` is prepended only if ``prepend_task_prefix``; LM prompt decorations
   (``example_input_prefix``, ``choice_prefix``, ``append_choices_to_input``, ...) are dropped since
   options are kept apart from the input.
3. **Option order.** Many task files list the correct option first. A task whose examples all offer
   the same option set keeps one canonical order (that of its first example); other tasks have each
   example's options shuffled (seeded by a stable hash of the task name).
4. **Task filters**: a task needs multiple-choice examples; no ``exclude_keywords`` keyword
   (case-insensitive); at least ``min_examples`` usable examples and ``min_test_examples`` left for
   test; at most ``max_non_latin_fraction`` non-Latin letters in its training split; the
   pre-registered pool filter on its training split (``max_options``, ``max_median_input_chars``);
   at most ``max_subtasks_per_task`` subtasks per parent (lowest stable hash of the name first).
5. **Per-task split.** Examples are shuffled by a seed from a stable hash (SHA-256) of the task
   name; the first ``n_train`` are train, the next ``n_dev`` dev, then at most ``max_test`` test.
6. **Meta split.** Parents (a task with all its subtasks) are ordered by a stable hash of
   ``<split_salt>/<parent>`` and cut at the configured task fractions: a parent goes to the split
   holding the middle of its block of tasks, so related subtasks never straddle meta splits.

No rule looks at dev or test examples or at any score. Parsed collections are cached under
``cache_dir()/tasks/bigbench-cls-<version>-<hash of the config>/{train,dev,test}/`` with a
``manifest.json`` (the resolved config and the counts of every step).
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import math
import os
import random
import shutil
import statistics
import tarfile
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from liftpeft.data.bigbench_config import (
    META_SPLITS,
    BigBenchClsConfig,
    ConfigLike,
    load_bigbench_config,
)
from liftpeft.data.cache import cache_dir, download_sdist
from liftpeft.tasks.chance import chance_accuracy, majority_class_rate
from liftpeft.tasks.jsonl import read_task, write_task_collection
from liftpeft.tasks.schema import ChoiceExample, Task

__all__ = [
    "BigBenchClsConfig",
    "assign_meta_splits",
    "bigbench_cls_folder",
    "build_bigbench_cls",
    "chance_accuracy",
    "fetch_bigbench",
    "load_bigbench_cls",
    "load_bigbench_config",
    "majority_class_rate",
    "parse_target_scores",
    "stable_hash",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when parsing changes: it is part of the cache folder name
_TASKS_DIR = ("bigbench", "benchmark_tasks")

Item = tuple[str, tuple[str, ...], str]  # (input, options in file order, answer)


@dataclass
class _Source:
    """One ``task.json`` reduced to what the pipeline needs."""

    name: str  # "<task>" or "<task>.<subtask>"
    parent: str
    keywords: frozenset[str]
    items: list[Item]
    n_examples: int  # examples in the file
    n_choice: int  # of which carry target_scores
    dropped: Counter = field(default_factory=Counter)  # example drop reason -> count


def stable_hash(text: str) -> int:
    """A 64-bit hash of ``text`` that is the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def fetch_bigbench(version: str = "1.0.0") -> Path:
    """Path of the ``bigbench`` sdist in the cache, downloaded once with pip (about 358 MB)."""
    return download_sdist("bigbench", version)


# ----------------------------------------------------------------------------- examples


def parse_target_scores(value: Any) -> dict[str, float] | None:
    """``target_scores`` as ``{option: score}``, or None if it is not a mapping of numbers.

    A string is parsed as JSON, then as a Python literal (``ast.literal_eval``, never ``eval``).
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            try:
                value = ast.literal_eval(value.strip())
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                return None
    if not isinstance(value, dict):
        return None
    scores = {}
    for option, score in value.items():
        if not isinstance(option, str) or isinstance(score, bool):
            return None
        try:
            number = float(score)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(number):
            return None
        scores[option] = number
    return scores


def _parse_example(raw: Any, prefix: str) -> tuple[Item | None, str]:
    """One raw example -> ``(item, "")`` or ``(None, reason it is dropped)``."""
    if not isinstance(raw, dict) or "target_scores" not in raw:
        return None, "no target_scores"
    scores = parse_target_scores(raw["target_scores"])
    if scores is None:
        return None, "unreadable target_scores"
    text = raw.get("input")
    if not isinstance(text, str) or not text.strip():
        return None, "empty input"
    options = tuple(option.strip() for option in scores)
    if len(options) < 2:
        return None, "fewer than 2 options"
    if not all(options) or len(set(options)) != len(options):
        return None, "blank or duplicate option"
    best = max(scores.values())
    top = [o for o, s in zip(options, scores.values()) if s == best]
    if len(top) != 1:
        return None, "tie for the top score"
    text = text.strip()
    if prefix:
        text = f"{prefix}\n{text}"
    return (text, options, top[0]), ""


def _dedupe(items: list[Item], dropped: Counter) -> list[Item]:
    """Keep the first of exact duplicates; drop every copy of duplicates that disagree."""
    answers: dict[tuple[str, frozenset[str]], set[str]] = defaultdict(set)
    for text, options, answer in items:
        answers[text, frozenset(options)].add(answer)
    seen: set[tuple[str, frozenset[str]]] = set()
    out = []
    for item in items:
        key = (item[0], frozenset(item[1]))
        if len(answers[key]) > 1:
            dropped["duplicate with another answer"] += 1
        elif key in seen:
            dropped["duplicate"] += 1
        else:
            seen.add(key)
            out.append(item)
    return out


def _to_examples(name: str, items: list[Item]) -> list[ChoiceExample]:
    """Order options (canonical for a fixed option set, else a seeded shuffle) and index labels."""
    fixed = len({frozenset(options) for _, options, _ in items}) == 1
    rng = random.Random(stable_hash(f"options/{name}"))
    canonical = list(items[0][1]) if items else []
    examples = []
    for text, options, answer in items:
        ordered = list(canonical) if fixed else list(options)
        if not fixed:
            rng.shuffle(ordered)
        examples.append(ChoiceExample(text, tuple(ordered), ordered.index(answer)))
    return examples


# ----------------------------------------------------------------------------- archive


def _task_path(member_name: str) -> tuple[str, ...] | None:
    """``(<task>, [<subtask>,] <file>)`` for a member under bigbench/benchmark_tasks, else None."""
    parts = PurePosixPath(member_name).parts
    for i in range(len(parts) - 1):
        if parts[i : i + 2] == _TASKS_DIR:
            rest = parts[i + 2 :]
            return rest if len(rest) in (2, 3) else None
    return None


def _read_sources(archive: Path, config: BigBenchClsConfig) -> tuple[list[_Source], dict[str, Any]]:
    """Stream every task.json out of ``archive``; also count folders by kind."""
    raw_keywords: dict[str, frozenset[str]] = {}
    sources: list[_Source] = []
    json_dirs: set[str] = set()
    py_dirs: set[str] = set()
    unreadable: list[str] = []
    with tarfile.open(archive, mode="r|gz") as tar:
        for member in tar:
            rest = _task_path(member.name)
            if rest is None or not member.isfile() or rest[-1] not in ("task.json", "task.py"):
                continue
            folder = "/".join(rest[:-1])
            if rest[-1] == "task.py":
                py_dirs.add(folder)
                continue
            json_dirs.add(folder)
            handle = tar.extractfile(member)
            try:
                spec = json.load(handle)
            except (ValueError, UnicodeDecodeError) as err:
                logger.warning("skipping unreadable %s: %s", member.name, err)
                unreadable.append(folder)
                continue
            if not isinstance(spec, dict):
                unreadable.append(folder)
                continue
            raw_keywords[folder] = _keywords(spec)
            if "examples" in spec:
                sources.append(_source_from_spec(folder, spec, config))
    for source in sources:  # a subtask inherits its parent's keywords (the parent may come later)
        source.keywords = source.keywords | raw_keywords.get(source.parent, frozenset())
    parents_with_subtasks = {d.split("/")[0] for d in json_dirs | py_dirs if "/" in d}
    counts = {
        "task_folders": len({d.split("/")[0] for d in json_dirs | py_dirs}),
        "composite_tasks": len(parents_with_subtasks),
        "subtask_folders": len({d for d in json_dirs | py_dirs if "/" in d}),
        "programmatic_folders": len(py_dirs - json_dirs),
        "json_files_with_examples": len(sources),
        "unreadable_json": len(unreadable),
    }
    return sorted(sources, key=lambda s: s.name), counts


def _keywords(spec: dict[str, Any]) -> frozenset[str]:
    """The task's keywords, lower-cased (matching is case-insensitive)."""
    raw = spec.get("keywords")
    if not isinstance(raw, list):
        return frozenset()
    return frozenset(k.strip().lower() for k in raw if isinstance(k, str))


def _source_from_spec(folder: str, spec: dict[str, Any], config: BigBenchClsConfig) -> _Source:
    parent = folder.split("/")[0]
    keywords = _keywords(spec)
    prefix = spec.get("task_prefix") if config.prepend_task_prefix else ""
    prefix = prefix.strip() if isinstance(prefix, str) else ""
    raw_examples = spec["examples"] if isinstance(spec["examples"], list) else []
    source = _Source(folder.replace("/", "."), parent, keywords, [], len(raw_examples), 0)
    for raw in raw_examples:
        if isinstance(raw, dict) and "target_scores" in raw:
            source.n_choice += 1
        item, reason = _parse_example(raw, prefix)
        if item is None:
            source.dropped[reason] += 1
        else:
            source.items.append(item)
    source.items = _dedupe(source.items, source.dropped)
    return source


# ----------------------------------------------------------------------------- tasks


def _split_task(name: str, examples: list[ChoiceExample], config: BigBenchClsConfig) -> Task:
    examples = list(examples)
    random.Random(stable_hash(f"examples/{name}")).shuffle(examples)
    n_fit = config.n_train + config.n_dev
    return Task(
        name,
        "choice",
        train=examples[: config.n_train],
        dev=examples[config.n_train : n_fit],
        test=examples[n_fit : n_fit + config.max_test],
    )


def _non_latin_fraction(examples: list[ChoiceExample]) -> float:
    letters = [c for e in examples for text in (e.input, *e.options) for c in text if c.isalpha()]
    if not letters:
        return 0.0
    other = sum(not unicodedata.name(c, "").startswith("LATIN") for c in letters)
    return other / len(letters)


def _script_reason(task: Task, config: BigBenchClsConfig) -> str | None:
    fraction = _non_latin_fraction(task.train)
    if fraction > config.max_non_latin_fraction:
        return f"language: {fraction:.0%} of training letters are not Latin script"
    return None


def _pool_reason(task: Task, config: BigBenchClsConfig) -> str | None:
    """Why the pre-registered pool filter drops ``task`` (training split only), or None."""
    n_options = max(len(e.options) for e in task.train)
    if config.max_options is not None and n_options > config.max_options:
        return f"pool filter: {n_options} options > max_options={config.max_options}"
    median = statistics.median(len(e.input) for e in task.train)
    limit = config.max_median_input_chars
    if limit is not None and median > limit:
        return f"pool filter: median input {median:g} characters > max_median_input_chars={limit}"
    return None


def _cap_subtasks(tasks: list[Task], parent_of: dict[str, str], limit: int | None) -> set[str]:
    """Names of subtasks beyond ``limit`` per parent (lowest stable hash kept)."""
    if limit is None:
        return set()
    by_parent: dict[str, list[str]] = defaultdict(list)
    for task in tasks:
        if parent_of[task.name] != task.name:
            by_parent[parent_of[task.name]].append(task.name)
    capped = set()
    for names in by_parent.values():
        names.sort(key=lambda n: stable_hash(f"subtasks/{n}"))
        capped.update(names[limit:])
    return capped


def assign_meta_splits(group_sizes: dict[str, int], config: BigBenchClsConfig) -> dict[str, str]:
    """Meta split of each group: groups ordered by stable hash, cut at the task fractions.

    A group of ``k`` tasks occupies positions ``[before, before + k)`` of the ordered pool and goes
    to the split whose cumulative fraction first exceeds the middle of that block.
    """
    total = sum(group_sizes.values())
    order = sorted(group_sizes, key=lambda g: (stable_hash(f"{config.split_salt}/{g}"), g))
    cuts = []
    running = 0.0
    for split in META_SPLITS:
        running += config.meta_split[split]
        cuts.append((running, split))
    out: dict[str, str] = {}
    before = 0
    for group in order:
        middle = (before + group_sizes[group] / 2) / total
        out[group] = next((s for cut, s in cuts if middle < cut), META_SPLITS[-1])
        before += group_sizes[group]
    return out


def _filter(report: dict[str, Any], step: str, items: list, reason_of: Callable) -> list:
    """Keep the items (sources or tasks) whose ``reason_of`` is None; log and record the rest."""
    reasons = {item.name: reason_of(item) for item in items}
    kept = [item for item in items if not reasons[item.name]]
    dropped = {name: reason for name, reason in reasons.items() if reason}
    report["steps"].append({"step": step, "kept": len(kept), "dropped": len(dropped)})
    report["dropped"].update(dropped)
    logger.info("BIG-bench %s: %d tasks kept, %d dropped", step, len(kept), len(dropped))
    for name, reason in sorted(dropped.items()):
        logger.debug("  dropped %s: %s", name, reason)
    return kept


def build_bigbench_cls(
    archive: str | os.PathLike, config: ConfigLike = None
) -> tuple[dict[str, list[Task]], dict[str, Any]]:
    """Parse ``archive`` (the bigbench sdist) into meta splits, with a report of every step."""
    config = load_bigbench_config(config)
    sources, counts = _read_sources(Path(archive), config)
    logger.info("BIG-bench scan: %s", counts)
    report: dict[str, Any] = {
        "scan": counts,
        "examples_dropped": {s.name: dict(s.dropped) for s in sources if s.dropped},
        "steps": [],
        "dropped": {},
    }

    excluded = {k.lower() for k in config.exclude_keywords}
    sources = _filter(
        report, "multiple choice", sources, lambda s: None if s.n_choice else "no target_scores examples"
    )
    sources = _filter(
        report,
        "language keywords",
        sources,
        lambda s: f"language: keywords {sorted(s.keywords & excluded)}" if s.keywords & excluded else None,
    )
    sources = _filter(report, "enough examples", sources, lambda s: _size_reason(len(s.items), config))

    parent_of = {s.name: s.parent for s in sources}
    tasks = [_split_task(s.name, _to_examples(s.name, s.items), config) for s in sources]
    tasks = _filter(report, "language script (training splits)", tasks, lambda t: _script_reason(t, config))
    tasks = _filter(report, "pool filter (training splits)", tasks, lambda t: _pool_reason(t, config))
    capped = _cap_subtasks(tasks, parent_of, config.max_subtasks_per_task)
    tasks = _filter(
        report,
        "subtask cap",
        tasks,
        lambda t: f"subtask cap: {config.max_subtasks_per_task} per task" if t.name in capped else None,
    )

    meta = assign_meta_splits(dict(Counter(parent_of[t.name] for t in tasks)), config)
    splits: dict[str, list[Task]] = {s: [] for s in META_SPLITS}
    for task in tasks:
        splits[meta[parent_of[task.name]]].append(task)
    report["meta_split"] = {s: [t.name for t in splits[s]] for s in META_SPLITS}
    logger.info("BIG-bench meta split: %s", {s: len(v) for s, v in splits.items()})
    return splits, report


def _size_reason(n: int, config: BigBenchClsConfig) -> str | None:
    if n < config.min_examples:
        return f"{n} usable examples < min_examples={config.min_examples}"
    if n - config.n_train - config.n_dev < config.min_test_examples:
        return f"{n} usable examples leave fewer than {config.min_test_examples} for test"
    return None


# ----------------------------------------------------------------------------- cache


def bigbench_cls_folder(config: ConfigLike = None) -> Path:
    """Cache folder of the parsed pool for ``config`` (its name carries a hash of the config)."""
    config = load_bigbench_config(config)
    key = stable_hash(f"{config.fingerprint()}/format{FORMAT_VERSION}")
    return cache_dir() / "tasks" / f"bigbench-cls-{config.version}-{key:016x}"


def load_bigbench_cls(config: ConfigLike = None, cache: bool = True) -> dict[str, list[Task]]:
    """Meta-train / meta-dev / meta-test BIG-bench classification tasks, keyed by meta split.

    ``config``: None (the packaged ``configs/bigbench_cls.yaml``), a YAML path, a mapping or a
    ``BigBenchClsConfig``. With ``cache`` the parsed collections are read from (or written to)
    ``bigbench_cls_folder(config)``; without it the sdist is parsed and nothing is written but the
    sdist download itself.
    """
    config = load_bigbench_config(config)
    folder = bigbench_cls_folder(config)
    manifest_path = folder / "manifest.json"
    if cache and manifest_path.is_file():
        logger.info("BIG-bench classification pool from cache %s", folder)
        return _read_cached(folder, manifest_path)
    splits, report = build_bigbench_cls(fetch_bigbench(config.version), config)
    if cache:
        _write_cache(folder, splits, report, config)
    return splits


def _read_cached(folder: Path, manifest_path: Path) -> dict[str, list[Task]]:
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    names = manifest["report"]["meta_split"]
    return {s: [read_task(folder / s / name) for name in names[s]] for s in META_SPLITS}


def _write_cache(
    folder: Path, splits: dict[str, list[Task]], report: dict[str, Any], config: BigBenchClsConfig
) -> None:
    """Write to a temporary sibling, manifest last, then rename: a partial folder is never used."""
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for split, tasks in splits.items():
        (tmp / split).mkdir(parents=True, exist_ok=True)
        write_task_collection(tasks, tmp / split)
    manifest = {"format_version": FORMAT_VERSION, "config": config.to_dict(), "report": report}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True), "utf-8")
    if (folder / "manifest.json").is_file():  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return
    shutil.rmtree(folder, ignore_errors=True)  # a leftover without a manifest is incomplete
    try:
        os.replace(tmp, folder)
    except OSError:
        if not (folder / "manifest.json").is_file():  # not another process finishing first
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("BIG-bench classification pool cached in %s", folder)
