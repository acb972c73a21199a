"""Model cards (``README.md`` with YAML metadata) for priors and exported adapters.

Cards are ``huggingface_hub`` ``ModelCard`` objects: ``ModelCardData`` writes the YAML header the Hub
reads (``library_name``, ``tags``, ``base_model``), the text below it says what the artefact is and
how to use it. ``base_model`` is set only to a Hub repo id: a model given as a local directory is
named in the text, or as its repo id when the directory is a snapshot in a Hub cache
(``.../models--owner--name/snapshots/<sha>``), since the Hub refuses a path there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CARD_FILE = "README.md"
_MAX_TASKS_LISTED = 50


def hub_model_id(ref: str | os.PathLike | None) -> str | None:
    """The Hub repo id of a model reference, or ``None`` when it has none (a plain local path)."""
    if ref is None:
        return None
    path = Path(ref)
    parts = path.parts
    for i, part in enumerate(parts[:-2]):
        if part.startswith("models--") and parts[i + 1] == "snapshots":
            return part.removeprefix("models--").replace("--", "/")
    if path.exists() or str(ref).startswith((".", "/", "~")):
        return None
    from liftpeft.hub import is_repo_id

    return str(ref) if is_repo_id(str(ref)) else None


def _card(data: Any, text: str) -> str:
    from huggingface_hub import ModelCard

    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{text.strip()}\n"))


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def prior_card(
    prior: Any,
    *,
    repo_id: str | None = None,
    base_model: str | None = None,
    results: dict[str, Any] | None = None,
) -> str:
    """The card of a ``LearnedPrior``: base model, PEFT config, the tasks it was fitted on, its
    settings and, if given, ``results`` (``{metric: value}`` or ``{method: {metric: value}}``)."""
    from huggingface_hub import ModelCardData

    from liftpeft._version import __version__

    backbone = prior.backbone or {}
    model_ref = backbone.get("model")
    base_id = base_model or hub_model_id(model_ref)
    peft_config = backbone.get("peft_config") or {}
    peft_type = str(peft_config.get("peft_type") or "LORA")
    tags = sorted({"liftpeft", "lift", "peft", "meta-learning", "bayesian", "prior", peft_type.lower()})
    data = ModelCardData(
        library_name="liftpeft",
        tags=tags,
        base_model=base_id,
        liftpeft={
            "format": "liftpeft-prior/2" if prior.is_structured else "liftpeft-prior/1",
            "components": prior.n_components,
            "adapter_parameters": prior.dim,
            "beta": prior.beta,
            "sigma": prior.sigma,
            "source": prior.source,
            "n_tasks": len(prior.task_names),
        },
    )
    where = repo_id or "path/to/this/prior"
    base_text = (
        f"`{base_id}`" if base_id else f"`{model_ref}` (a local model)" if model_ref else "its base model"
    )
    peft_text = ", ".join(
        f"{k}={peft_config[k]}"
        for k in ("peft_type", "r", "lora_alpha", "target_modules")
        if k in peft_config
    )
    lines = [
        f"# LiFT prior over {peft_type} adapters of {base_text}",
        "",
        f"A meta-learned mixture prior over parameter-efficient adapters (LiFT, Kim & Hospedales, ICLR "
        f"2025), made with liftpeft {prior.version} (source: {prior.source}). "
        "Fine-tune a new task under it from a few examples:",
        "",
        "```bash",
        f"liftpeft adapt --prior {where} --task ./my-task --out ./adapter",
        "```",
        "",
        "or inside your own `transformers` training loop:",
        "",
        "```python",
        "from liftpeft.learned_prior import LearnedPrior",
        "from liftpeft.peft_integration.prior_trainer import PriorTrainer, prior_peft_model",
        "",
        f'prior = LearnedPrior.from_pretrained("{where}")',
        "model = prior_peft_model(prior)  # the base model with the prior's adapter, at its best mean",
        "trainer = PriorTrainer(model=model, args=training_args, train_dataset=train, prior=prior)",
        "```",
        "",
        "## The prior",
        "",
        "| | |",
        "|---|---|",
        f"| base model | {base_text} |",
        f"| adapter | {peft_text or peft_type} ({prior.dim} parameters) |",
        f"| components K | {prior.n_components} (weights {', '.join(f'{float(w):.3f}' for w in prior.weights)}) |",
        f"| beta (task spread) / sigma | {prior.beta:g} / {prior.sigma:g} |",
        f"| format | {data.liftpeft['format']} |",
        f"| created | {prior.created} |",
    ]
    lines += [f"| {k.replace('_', ' ')} | {v} |" for k, v in prior.structure_summary().items()]
    names = list(prior.task_names)
    lines += ["", f"## Fitted on {len(names)} tasks", ""]
    if names:
        shown = ", ".join(f"`{n}`" for n in names[:_MAX_TASKS_LISTED])
        lines.append(
            shown + (f", and {len(names) - _MAX_TASKS_LISTED} more" if len(names) > _MAX_TASKS_LISTED else "")
        )
    else:
        lines.append("(no task names were recorded)")
    settings = {k: v for k, v in sorted((prior.config or {}).items()) if not isinstance(v, (list, dict))}
    if settings:
        lines += ["", "## Settings", "", "| setting | value |", "|---|---|"]
        lines += [f"| `{k}` | {_value(v)} |" for k, v in settings.items()]
    if results:
        lines += ["", "## Results", "", *_results_table(results)]
    lines += ["", f"Card generated by liftpeft {__version__}."]
    return _card(data, "\n".join(lines))


def _results_table(results: dict[str, Any]) -> list[str]:
    if all(isinstance(v, dict) for v in results.values()):
        metrics = sorted({m for row in results.values() for m in row})
        out = ["| | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
        for name, row in results.items():
            out.append(f"| {name} | " + " | ".join(_value(row.get(m, "")) for m in metrics) + " |")
        return out
    return ["| metric | value |", "|---|---|", *(f"| {k} | {_value(v)} |" for k, v in results.items())]


def adapter_card(description: dict[str, Any], metadata: dict[str, Any]) -> str:
    """The card of an exported adapter, written before ``peft``'s ``save_pretrained`` (which adds its
    own metadata to it; ``fix_adapter_card`` then sets the base model)."""
    from huggingface_hub import ModelCardData

    return _card(ModelCardData(library_name="peft", tags=["liftpeft"]), _adapter_text(description, metadata))


def _adapter_text(description: dict[str, Any], metadata: dict[str, Any]) -> str:
    model_ref = description.get("model")
    base_id = hub_model_id(model_ref)
    base_text = f"`{base_id}`" if base_id else f"`{model_ref}`"
    how = [f"method `{metadata['method']}`"] if metadata.get("method") else []
    how += [f"adapted on task `{metadata['adapted_on']}`"] if metadata.get("adapted_on") else []
    lines = [
        f"# {description.get('peft_config', {}).get('peft_type', 'PEFT')} adapter of {base_text}",
        "",
        "Written by liftpeft" + (f" ({', '.join(how)})" if how else "") + ". Load it with peft:",
        "",
        "```python",
        "from peft import AutoPeftModel",
        "",
        'model = AutoPeftModel.from_pretrained("path/or/repo-id/of/this/adapter")',
        "```",
    ]
    if metadata.get("prior"):
        lines += ["", f"Prior: `{metadata['prior']}`."]
    return "\n".join(lines)


def fix_adapter_card(
    folder: str | os.PathLike, model_ref: str, extra_tags: tuple[str, ...] = ("liftpeft",)
) -> None:
    """After ``peft``'s ``save_pretrained`` updated the card: ``base_model`` and the
    ``base_model:adapter:`` tag name the model's Hub id (dropped for a plain local path, which the
    Hub would refuse), and liftpeft's tags are kept beside peft's."""
    from huggingface_hub import ModelCard

    from liftpeft.atomic import atomic_write_text

    path = Path(folder) / CARD_FILE
    card = ModelCard.load(path)
    base_id = hub_model_id(model_ref)
    tags = {t for t in (card.data.tags or []) if not str(t).startswith("base_model:")}
    tags |= set(extra_tags)
    if base_id:
        tags.add(f"base_model:adapter:{base_id}")
        card.data.base_model = base_id
    else:
        card.data.base_model = None
    card.data.tags = sorted(tags)
    card.data.library_name = "peft"
    atomic_write_text(path, str(card))
