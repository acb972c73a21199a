"""The paper's own benchmarks (GPU, hub access): CrossFit with BART-base / FLAN-T5, VTAB-1K with ViT-B/16.

They need data and weights this project cannot fetch: the CrossFit data folder built by CrossFit's
script, the ``vtab-1k`` folder, and the hub models (``facebook/bart-base``, ``google/flan-t5-*``,
``google/vit-base-patch16-224-in21k``) or local copies of them. ``docs/paper-benchmarks.md`` says how
to run them; their tests use fixtures in the same file layouts and tiny random models.

* ``crossfit-bart`` / ``crossfit-flan-t5`` -- ``liftpeft.data.crossfit`` (meta split ``cls45`` unless
  ``split`` names another), text-to-text on a seq2seq model through ``PeftBackbone``.
* ``vtab-1k`` -- ``liftpeft.data.vtab`` (leave-one-group-out, ``held_out``), image classification on a
  ViT through ``ViTBackbone``; one head as wide as the largest class count of the datasets used.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from liftpeft.bench.benchmarks import BenchmarkData, _peft_benchmark, register_benchmark
from liftpeft.objective import TaskObjective
from liftpeft.problem import MetaProblem


def _crossfit_fields() -> tuple[str, ...]:
    from liftpeft.data.crossfit import CrossFitConfig

    return tuple(f.name for f in dataclasses.fields(CrossFitConfig))


def _crossfit(name: str, s: dict[str, Any]) -> BenchmarkData:
    from liftpeft.data.crossfit import load_crossfit

    if not s.get("model"):
        raise ValueError(
            f"{name} needs settings model (a hub id such as facebook/bart-base, or a local copy)"
        )
    data = _peft_benchmark(name, load_crossfit(s), s["model"], s)
    data.info["crossfit"] = {k: s.get(k) for k in _crossfit_fields() if k in s}
    return data


@register_benchmark(
    "crossfit-bart",
    "CrossFit text-to-text, CLS-45 meta split (paper), BART-base + LoRA r=4 (GPU, hub data)",
    settings=_crossfit_fields(),
)
def _crossfit_bart(s: dict[str, Any]) -> BenchmarkData:
    return _crossfit("crossfit-bart", s)


@register_benchmark(
    "crossfit-flan-t5",
    "CrossFit text-to-text, CLS-45 meta split (paper's scale-up), FLAN-T5 + LoRA r=4 (GPU, hub data)",
    settings=_crossfit_fields(),
)
def _crossfit_flan_t5(s: dict[str, Any]) -> BenchmarkData:
    return _crossfit("crossfit-flan-t5", s)


VIT_SETTINGS = ("head", "head_scale")


def _vtab_fields() -> tuple[str, ...]:
    from liftpeft.data.vtab import VtabConfig

    return tuple(f.name for f in dataclasses.fields(VtabConfig))


@register_benchmark(
    "vtab-1k",
    "VTAB-1K, 19 datasets, leave-one-group-out (paper), ViT-B/16 + LoRA r=4 (GPU, hub data)",
    settings=(*_vtab_fields(), *VIT_SETTINGS),
)
def _vtab(s: dict[str, Any]) -> BenchmarkData:
    from liftpeft.data.vtab import load_vtab
    from liftpeft.peft_integration.settings import BackboneConfig
    from liftpeft.peft_integration.vision import VisionTaskObjective
    from liftpeft.peft_integration.vit import ViTBackbone

    if not s.get("model"):
        raise ValueError("vtab-1k needs settings model (google/vit-base-patch16-224-in21k, or a local copy)")
    cfg = BackboneConfig.from_settings(s)
    splits = load_vtab(s)
    n_way = max(len(t.classes) for tasks in splits.values() for t in tasks)
    backbone = ViTBackbone(
        s["model"],
        cfg.peft,
        n_way=n_way,
        head=s.get("head", "linear"),
        head_scale=float(s.get("head_scale", 10.0)),
        seed=cfg.backbone_seed,
        device=cfg.device,
    )

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
        "tasks": {k: s.get(k) for k in _vtab_fields() if k in s},
        "n_train_tasks": len(train),
        "n_dev_tasks": len(dev),
        "n_test_tasks": len(test),
        "adapter_dim": backbone.dim,
        "chance_accuracy_per_task": {o.name: 1.0 / o.n_classes for o in test},
    }
    return BenchmarkData("vtab-1k", problem, test, info)
