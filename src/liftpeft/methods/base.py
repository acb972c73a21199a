"""The method interface and the one registry of methods.

Every method (LiFT and each baseline) meta-trains on a ``MetaProblem`` (training tasks as
``TaskObjective`` s plus the PEFT initialisation ``theta0``) and adapts its meta-trained state to a new
task, returning adapter samples ``(M, d)`` (``M = 1`` for point estimates). Methods only see losses of
flat vectors, so they run unchanged on every backbone and on the synthetic benchmarks.

A method whose predictions are not the task's own head (ProtoNet classifies by prototypes) also has
``scoring_objective(task)``, the objective whose ``evaluate`` scores its adapters; runners call
``scoring_objective(method, task)``, which falls back to the task itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from liftpeft.objective import TaskObjective
from liftpeft.problem import MetaProblem  # re-exported: it lives in the bottom module liftpeft.problem


@dataclass(frozen=True)
class RunContext:
    """Where a meta-training run may checkpoint, and whether it continues from a checkpoint there.

    ``workdir``: a folder for checkpoints (``None``: none are written); ``resume``: continue from the
    checkpoint in ``workdir`` if there is one; ``checkpoint_every``: steps between checkpoints
    (``None``: the method's own default); ``on_log``: called with each metrics record the method
    logs (LiFT: the chain's diagnostics). Methods declared ``resumable_mid_run=False`` ignore it.
    """

    workdir: Path | None = None
    resume: bool = False
    checkpoint_every: int | None = None
    on_log: Callable[[dict[str, Any]], None] | None = None


class Method(Protocol):
    """A learning-to-fine-tune method."""

    name: str

    def meta_train(self, problem: MetaProblem, seed: int) -> Any:
        """Learn from the training tasks; returns the method's state (a prior, an init, ...).

        A method registered with ``resumable_mid_run=True`` also takes ``run: RunContext | None``.
        """
        ...

    def adapt(self, state: Any, task: TaskObjective, seed: int) -> torch.Tensor:
        """Fine-tune on ``task``'s train split from ``state``; returns adapter samples ``(M, d)``."""
        ...


def scoring_objective(method: Method, task: TaskObjective) -> TaskObjective:
    """The objective that scores ``method``'s adapters on ``task`` (``task`` unless the method says otherwise)."""
    hook = getattr(method, "scoring_objective", None)
    return task if hook is None else hook(task)


@dataclass(frozen=True)
class CostSpec:
    """How ``bench.cost`` times one meta-training iteration of a method (declared, never guessed).

    ``unit``: what one iteration of the budget field is; ``uniform``: settings that make every
    timed iteration the same kind of work (no warm-up phases; only those the config has are used);
    ``per_task(config)``: one iteration does the same work on every training task (timed on a few
    tasks, divided by their number); ``min_tasks(config)``: training tasks the timed problem must
    hold; ``chain_components(config)``: for a LiFT-style chain, the largest mixture size ``K``
    (the chain keeps ``K + 1`` samples before its mixture starts, and is thinned to reach them).
    """

    unit: str
    uniform: dict[str, Any] = field(default_factory=dict)
    per_task: Callable[[Any], bool] | None = None
    min_tasks: Callable[[Any], int] | None = None
    chain_components: Callable[[Any], int] | None = None


def _largest_k(config: Any) -> int:
    return max([config.k, *getattr(config, "extra_k", [])])


# the defaults of each budget field; a method with other needs passes ``cost=`` to ``register``
DEFAULT_COSTS: dict[str, CostSpec] = {
    "steps": CostSpec("SGLD-Gibbs step", {"warmup_steps": 0, "burnin_steps": 0}, chain_components=_largest_k),
    "meta_steps": CostSpec(
        "outer update",
        {"warmup_steps": 0, "burnin_steps": 0, "assignment_warmup_steps": 0, "kept_samples": 1},
    ),
    "task_steps": CostSpec("per-task adapter step", {"cluster_steps": 1}, per_task=lambda config: True),
}


@dataclass(frozen=True)
class MethodInfo:
    name: str
    description: str
    factory: Callable[..., Method]
    config_class: type | None
    family: str = "other"
    state_types: tuple[type, ...] = ()
    test_time_fields: tuple[str, ...] = ()
    budget_field: str | None = None
    resumable_mid_run: bool = False
    variants: Any = None
    cost: CostSpec | None = None
    shards_tasks: bool = False


_REGISTRY: dict[str, MethodInfo] = {}


def register(
    name: str,
    description: str,
    config_class: type | None = None,
    family: str = "other",
    *,
    state_types: tuple[type, ...] = (),
    test_time_fields: tuple[str, ...] = (),
    budget_field: str | None = None,
    resumable_mid_run: bool = False,
    variants: Any = None,
    cost: CostSpec | None = None,
    shards_tasks: bool = False,
):
    """Class decorator adding a method to the registry (``liftpeft methods`` lists them).

    ``family`` groups methods in reports (``"LiFT"``, ``"LiFT ablation"``, ``"meta-learning"``, ...).
    What runners must not guess, the method declares:

    * ``state_types``: the classes its meta-trained state may contain (``torch.Tensor`` for a plain
      tensor); ``state_io.load_state`` resolves saved class names against these only;
    * ``test_time_fields``: the settings that only affect adaptation (a sweep over them shares one
      meta-trained state);
    * ``budget_field``: the setting counting meta-training iterations (``None``: nothing iterates);
    * ``resumable_mid_run``: ``meta_train`` takes ``run: RunContext`` and continues a killed run
      from its last checkpoint (otherwise it restarts, deterministically, from scratch);
    * ``shards_tasks``: ``meta_train`` runs data-parallel over tasks when launched by torchrun
      (``liftpeft.scale``); other methods refuse to run on several ranks;
    * ``cost``: how ``bench.cost`` times an iteration (default: ``DEFAULT_COSTS[budget_field]``);
    * ``variants``: an object with ``names(config) -> [suffix]``, ``states(state) -> {suffix: state}``
      and ``row_settings(state) -> dict``: extra results of one meta-training (LiFT's ``extra_k``).
    """

    def wrap(cls):
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is registered twice")
        if config_class is not None:
            known = {f.name for f in dataclasses.fields(config_class)}
            for declared in (*test_time_fields, *([budget_field] if budget_field else [])):
                if declared not in known:
                    raise ValueError(f"method {name!r} declares {declared!r}, which its config lacks")
        _REGISTRY[name] = MethodInfo(
            name,
            description,
            cls,
            config_class,
            family,
            tuple(state_types),
            tuple(test_time_fields),
            budget_field,
            resumable_mid_run,
            variants,
            cost if cost is not None else DEFAULT_COSTS.get(budget_field or ""),
            shards_tasks,
        )
        cls.name = name
        return cls

    return wrap


def available_methods() -> dict[str, MethodInfo]:
    from liftpeft import methods  # noqa: F401  (importing the package registers every method)

    return dict(sorted(_REGISTRY.items()))


def build_method(name: str, **overrides: Any) -> Method:
    """Instantiate a registered method with its default configuration updated by ``overrides``."""
    registry = available_methods()
    if name not in registry:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(registry)}")
    info = registry[name]
    if info.config_class is None:
        if overrides:
            raise TypeError(f"method {name!r} takes no configuration, got {sorted(overrides)}")
        return info.factory()
    fields = {f.name for f in dataclasses.fields(info.config_class)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TypeError(f"method {name!r} has no setting(s) {unknown}; its settings are {sorted(fields)}")
    return info.factory(info.config_class(**overrides))
