"""A zoo prior's mixture components as plain ``peft`` adapter directories, each with a model card.

``export_components(backbone, prior, folder)`` writes ``folder/component-<j>/`` for every component
``j`` of the prior: its mean as an adapter that ``peft.PeftModel.from_pretrained(base, dir)`` loads
(``export_adapter``), and a ``README.md`` model card (``huggingface_hub.ModelCard``) with
``library_name: peft``, the base model, and what the prior was fitted on (the adapters, the
component's weight and variance). peft users can load a component without liftpeft.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from liftpeft.learned_prior import LearnedPrior
from liftpeft.peft_integration.backbone import PeftBackbone
from liftpeft.peft_integration.export import export_adapter

COMPONENTS = "components"


def component_card(backbone: PeftBackbone, prior: LearnedPrior, j: int, fitted_on: Sequence[str]) -> str:
    """The model card text of component ``j``: YAML metadata, then what it is."""
    from huggingface_hub import ModelCardData

    peft_type = str(getattr(backbone.peft_config.peft_type, "value", backbone.peft_config.peft_type))
    data = ModelCardData(
        library_name="peft",
        base_model=backbone.model_ref,
        tags=["liftpeft", "zoo-prior", peft_type.lower()],
    )
    members = ", ".join(f"`{name}`" for name in fitted_on) or "(unnamed adapters)"
    spread = float(prior.covariances[j].mean().sqrt())
    return (
        f"---\n{data.to_yaml()}\n---\n\n"
        f"# Component {j} of a liftpeft zoo prior\n\n"
        f"A {peft_type} adapter for `{backbone.model_ref}`: the mean of component {j} (of "
        f"{prior.n_components}) of a mixture prior that `liftpeft zoo-prior` fitted, without meta-training, "
        f"to {len(fitted_on)} fine-tuned adapters: {members}.\n\n"
        f"- mixture weight: {float(prior.weights[j]):.4f}\n"
        f"- root-mean component variance: {spread:.4g}\n"
        f"- task spread beta: {prior.beta:g}\n\n"
        "Load it with peft alone:\n\n"
        "```python\nfrom peft import PeftModel\n"
        f'model = PeftModel.from_pretrained(base_model, "component-{j}")\n```\n\n'
        "To adapt a new task under the whole prior, use the prior folder itself: "
        "`liftpeft adapt --prior PRIOR --task TASK --out ADAPTER`.\n"
    )


def export_components(
    backbone: PeftBackbone,
    prior: LearnedPrior,
    folder: str | os.PathLike,
    fitted_on: Sequence[str] = (),
) -> list[Path]:
    """Write each component's mean as ``folder/component-<j>`` (a peft adapter with a model card)."""
    from huggingface_hub import ModelCard

    out = []
    for j in range(prior.n_components):
        metadata = {"zoo_prior_component": j, "weight": float(prior.weights[j]), "fitted_on": list(fitted_on)}
        path = export_adapter(backbone, prior.means[j], Path(folder) / f"component-{j}", metadata)
        ModelCard(component_card(backbone, prior, j, fitted_on)).save(path / "README.md")
        out.append(path)
    return out
