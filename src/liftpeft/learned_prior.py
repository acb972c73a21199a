"""The learned prior as an artefact: a directory with ``prior.safetensors`` and ``prior.json``.

``prior.safetensors`` holds the mixture (``weights`` (K,), ``means`` (K, d), ``covariances`` (K, d),
``counts`` (K,)), the PEFT initialisation ``center`` (d,) and, for the structured prior, the learned
task spread ``task_variance`` (d,). ``prior.json`` holds ``beta`` and ``sigma`` (and the structured prior's ``dof`` and ``structure``),
the backbone description (base model, PEFT config, adapter layout), the hyperparameters, the task
names, the liftpeft version, the creation time, and the SHA-256 of the tensor file (so a torn write
is detected). Both files are written atomically, the JSON last.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from liftpeft._version import __version__
from liftpeft.atomic import sha256_file, write_tensors_with_json
from liftpeft.core.mixture import OnlineGaussianMixture
from liftpeft.core.mixture_prior import MixturePrior
from liftpeft.core.penalty import AdapterPenalty, write_flat
from liftpeft.core.structured import spread_blocks

FORMAT_V1 = "liftpeft-prior/1"
FORMAT_V2 = "liftpeft-prior/2"  # adds task_variance, dof and structure (the structured prior)
TENSORS_FILE = "prior.safetensors"
META_FILE = "prior.json"


MAX_LISTED_BLOCKS = 256  # a prior lists its spread per block up to this many blocks, quantiles beyond


def adapter_blocks(mode: str, description: dict[str, Any], dim: int) -> tuple[torch.Tensor, list[str]]:
    """``spread_blocks`` for an adapter described by a backbone ``description`` (its ``spec`` names
    the PEFT tensors; without one, ``"tensor"`` falls back to one block)."""
    spec = description.get("spec") or {}
    numels = [int(torch.Size(shape).numel()) for shape in spec.get("shapes", [])]
    return spread_blocks(mode, dim, list(spec.get("names", [])), numels)


def structure_record(
    *,
    spread_mode: str,
    prior_beta: float,
    block_names: list[str],
    spread: torch.Tensor,
    clusters: int,
    tail_dof: float | None,
    weights: torch.Tensor,
    assignments: torch.Tensor,
    task_names: list[str],
    task_scale: torch.Tensor | None = None,
) -> dict[str, Any]:
    """The JSON ``structure`` of a structured prior: spread per block, clusters, tasks' scales."""
    beta = spread.double().sqrt()
    summary: dict[str, Any] = {"mode": spread_mode, "prior_beta": prior_beta, "n_blocks": len(block_names)}
    if len(block_names) <= MAX_LISTED_BLOCKS:
        summary["beta"] = {name: round(float(b), 6) for name, b in zip(block_names, beta)}
    qs = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)
    summary["beta_quantiles"] = {
        f"q{int(q * 100)}": round(float(v), 6) for q, v in zip(qs, beta.quantile(qs))
    }
    out: dict[str, Any] = {
        "spread": summary,
        "clusters": clusters,
        "tail_dof": tail_dof,
        "cluster_weights": [round(float(w), 4) for w in weights],
        "assignments": {
            name: [round(float(p), 3) for p in row] for name, row in zip(task_names, assignments)
        },
    }
    if tail_dof is not None and task_scale is not None:
        out["task_scale"] = {name: round(float(v), 4) for name, v in zip(task_names, task_scale)}
    return out


class PriorFormatError(ValueError):
    """A prior directory that cannot be read; the message says what is wrong."""


@dataclass
class LearnedPrior:
    """A mixture prior over adapters, ready for test-time adaptation (SPEC section 4)."""

    weights: torch.Tensor  # (K,)
    means: torch.Tensor  # (K, d)
    covariances: torch.Tensor  # (K, d)
    center: torch.Tensor  # (d,)
    beta: float
    sigma: float
    counts: torch.Tensor | None = None  # (K,)
    backbone: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    task_names: list[str] = field(default_factory=list)
    source: str = "meta-train"
    created: str = ""
    version: str = __version__
    trace: dict[str, list[float]] = field(default_factory=dict, repr=False)  # per kept phi sample
    # the structured prior (SPEC section 10): learned spread per coordinate, Student-t tails, and a
    # JSON summary (spread per block, training tasks' clusters and scales) that `liftpeft info` prints
    task_variance: torch.Tensor | None = None  # (d,); replaces beta^2 when set
    dof: float | None = None
    structure: dict[str, Any] = field(default_factory=dict, repr=False)
    siblings: dict[int, LearnedPrior] = field(default_factory=dict, repr=False)  # same chain, other K
    _penalties: dict[float, AdapterPenalty] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )  # penalty() per beta_scale, built once

    def __post_init__(self) -> None:
        k, d = self.means.shape
        if self.weights.shape != (k,) or self.covariances.shape != (k, d) or self.center.shape != (d,):
            raise PriorFormatError(
                f"inconsistent prior tensors: weights {tuple(self.weights.shape)}, means {(k, d)}, "
                f"covariances {tuple(self.covariances.shape)}, center {tuple(self.center.shape)}"
            )
        if self.task_variance is not None and self.task_variance.shape != (d,):
            raise PriorFormatError(
                f"task_variance has shape {tuple(self.task_variance.shape)}, expected ({d},)"
            )
        if not self.created:
            self.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @classmethod
    def from_mixture(
        cls, mixture: OnlineGaussianMixture, center: torch.Tensor, beta: float, sigma: float, **kw: Any
    ) -> LearnedPrior:
        return cls(
            weights=mixture.weights_.float(),
            means=mixture.means_.float(),
            covariances=mixture.covariances_.float(),
            counts=mixture.counts_.float(),
            center=center.detach().float().clone(),
            beta=beta,
            sigma=sigma,
            **kw,
        )

    def mixture(self) -> OnlineGaussianMixture:
        return OnlineGaussianMixture.from_params(self.weights, self.means, self.covariances, self.counts)

    def mixture_prior(self, beta_scale: float = 1.0) -> MixturePrior:
        """``sum_j alpha_j N(theta; mu_j, Sigma_j + (beta_scale * beta)^2 I)`` (``beta_scale`` widens
        the task spread at test time; 1 is the hierarchical model's own predictive)."""
        if not beta_scale > 0:
            raise ValueError(f"beta_scale must be > 0, got {beta_scale}")
        spread = None if self.task_variance is None else self.task_variance * beta_scale**2
        return MixturePrior(self.mixture(), self.beta * beta_scale, task_variance=spread, dof=self.dof)

    @property
    def is_structured(self) -> bool:
        """A prior of the structured model (learned spread, task clusters or heavy tails)."""
        return bool(self.structure) or self.task_variance is not None or self.dof is not None

    def structure_summary(self, max_tasks: int = 8) -> dict[str, str]:
        """The structured prior in words (``liftpeft info``): the learned spread, clusters, tails."""
        st = self.structure
        if not st:
            return {}
        out: dict[str, str] = {}
        spread = st.get("spread", {})
        q = spread.get("beta_quantiles", {})
        if spread.get("mode", "fixed") == "fixed":
            out["task_spread"] = f"fixed beta = {self.beta:g}"
        else:
            out["task_spread"] = (
                f"learned per {spread['mode']} ({spread.get('n_blocks')} blocks; prior beta "
                f"{spread.get('prior_beta'):g}): beta median {q.get('q50', float('nan')):.4g}, "
                f"10-90% {q.get('q10', float('nan')):.4g}-{q.get('q90', float('nan')):.4g}, "
                f"range {q.get('q0', float('nan')):.4g}-{q.get('q100', float('nan')):.4g}"
            )
        assignments = st.get("assignments", {})
        k = int(st.get("clusters", 1))
        if k > 1:
            members: dict[int, list[str]] = {j: [] for j in range(k)}
            for name, probs in assignments.items():
                members[max(range(k), key=lambda j: probs[j])].append(name)
            parts = []
            for j, weight in enumerate(st.get("cluster_weights", [])):
                names = members.get(j, [])
                shown = ", ".join(names[:max_tasks]) + (
                    f", +{len(names) - max_tasks}" if len(names) > max_tasks else ""
                )
                parts.append(f"#{j} weight {weight:.2f}: {len(names)} tasks ({shown or 'none'})")
            out["clusters"] = "; ".join(parts)
        if st.get("tail_dof") is not None:
            scales = sorted(st.get("task_scale", {}).items(), key=lambda item: item[1])
            least = ", ".join(f"{name} ({value:.2f})" for name, value in scales[:3])
            out["tails"] = (
                f"Student-t, nu = {st['tail_dof']:g}; least shrunk (smallest scale lambda): {least}"
            )
        return out

    # -- training under the prior in any loop ----------------------------------------------------
    def adapter_penalty(self, beta_scale: float = 1.0) -> AdapterPenalty:
        """``module -> -log p(theta)`` for a module holding this prior's adapter (matched by the
        parameter names recorded in ``backbone["spec"]``; without them, the trainable parameters)."""
        names = (self.backbone.get("spec") or {}).get("names")
        return AdapterPenalty(self.mixture_prior(beta_scale), names)

    def penalty(self, model: torch.nn.Module, scale: float = 1.0, beta_scale: float = 1.0) -> torch.Tensor:
        """``-scale * log p(theta)`` of ``model``'s adapter ``theta``: a scalar tensor whose gradient
        reaches the adapter parameters (add it to the loss of a custom loop). With a mean per-example
        loss over ``n`` training examples, ``scale = 1 / n`` makes the sum the negative log posterior
        over ``n``, so its minimiser is the MAP adapter."""
        key = float(beta_scale)
        if key not in self._penalties:
            self._penalties[key] = self.adapter_penalty(beta_scale)
        return self._penalties[key](model, scale)

    def init_adapter(self, model: torch.nn.Module, component: int | None = None) -> int:
        """Write the mean of ``component`` (default: the largest weight) into ``model``'s adapter, where
        LiFT's adaptation starts; returns the component."""
        j = int(self.weights.argmax()) if component is None else int(component)
        if not 0 <= j < self.n_components:
            raise ValueError(f"component must be in 0..{self.n_components - 1}, got {component}")
        write_flat(self.adapter_penalty().parameters(model), self.means[j])
        return j

    # -- the Hugging Face Hub (liftpeft.hub) ------------------------------------------------------
    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        overwrite: bool = False,
        repo_id: str | None = None,
        base_model: str | None = None,
        results: dict[str, Any] | None = None,
    ) -> Path:
        """Save as a Hub-ready directory: the prior files and a model card (``README.md``) naming the
        base model (``base_model`` overrides it; a Hub id), the tasks, the settings and ``results``."""
        from liftpeft import hub

        return hub.save_pretrained(
            self, save_directory, overwrite=overwrite, repo_id=repo_id, base_model=base_model, results=results
        )

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str | os.PathLike,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        subfolder: str | None = None,
        local_files_only: bool = False,
        force_download: bool = False,
    ) -> LearnedPrior:
        """A prior from a local directory or a Hub repo id (``revision``: branch, tag or commit;
        ``token``; ``cache_dir``; ``HF_HUB_OFFLINE=1`` or ``local_files_only`` read the cache only)."""
        from liftpeft import hub

        folder = hub.resolve(
            path_or_repo_id,
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            subfolder=subfolder,
            local_files_only=local_files_only,
            force_download=force_download,
        )
        return hub.load(folder)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        base_model: str | None = None,
        results: dict[str, Any] | None = None,
    ) -> Any:
        """Upload the prior with its model card to ``repo_id`` in one commit (the repo is created if
        missing); returns ``huggingface_hub``'s ``CommitInfo``."""
        from liftpeft import hub

        return hub.push_to_hub(
            self,
            repo_id,
            commit_message=commit_message,
            private=private,
            token=token,
            revision=revision,
            create_pr=create_pr,
            base_model=base_model,
            results=results,
        )

    # -- disk -------------------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {
            "weights": self.weights.float().contiguous(),
            "means": self.means.float().contiguous(),
            "covariances": self.covariances.float().contiguous(),
            "center": self.center.float().contiguous(),
        }
        if self.counts is not None:
            tensors["counts"] = self.counts.float().contiguous()
        if self.task_variance is not None:
            tensors["task_variance"] = self.task_variance.float().contiguous()
        # both written to temporaries first, the JSON renamed last: never a torn prior
        write_tensors_with_json(
            folder,
            TENSORS_FILE,
            META_FILE,
            tensors,
            lambda sha: {
                "format": FORMAT_V2 if self.is_structured else FORMAT_V1,
                "liftpeft_version": self.version,
                "created": self.created,
                "source": self.source,
                "n_components": self.n_components,
                "dim": self.dim,
                "beta": self.beta,
                "sigma": self.sigma,
                "backbone": self.backbone,
                "config": self.config,
                "task_names": self.task_names,
                "trace": self.trace,
                "dof": self.dof,
                "structure": self.structure,
                "tensors_sha256": sha,
            },
        )
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> LearnedPrior:
        folder = Path(folder)
        meta_file, tensor_file = folder / META_FILE, folder / TENSORS_FILE
        if not meta_file.is_file() or not tensor_file.is_file():
            raise PriorFormatError(
                f"{folder} is not a liftpeft prior directory (it needs {META_FILE} and {TENSORS_FILE}); "
                "create one with `liftpeft meta-train` or `liftpeft zoo-prior`"
            )
        try:
            meta = json.loads(meta_file.read_text())
        except json.JSONDecodeError as err:
            raise PriorFormatError(f"{meta_file}: invalid JSON ({err.msg})") from None
        if meta.get("format", FORMAT_V1) not in (FORMAT_V1, FORMAT_V2):
            raise PriorFormatError(
                f"{meta_file} has format {meta.get('format')!r}, which this liftpeft ({__version__}) "
                "cannot read; upgrade liftpeft"
            )
        if meta.get("tensors_sha256") != sha256_file(tensor_file):
            raise PriorFormatError(
                f"{tensor_file} does not match {meta_file} (an interrupted or partial write?); "
                "re-create the prior or restore it from a copy"
            )
        t = load_file(str(tensor_file))
        return cls(
            weights=t["weights"],
            means=t["means"],
            covariances=t["covariances"],
            center=t["center"],
            counts=t.get("counts"),
            task_variance=t.get("task_variance"),
            dof=None if meta.get("dof") is None else float(meta["dof"]),
            structure=meta.get("structure", {}),
            beta=float(meta["beta"]),
            sigma=float(meta["sigma"]),
            backbone=meta.get("backbone", {}),
            config=meta.get("config", {}),
            task_names=meta.get("task_names", []),
            trace=meta.get("trace", {}),
            source=meta.get("source", "meta-train"),
            created=meta.get("created", ""),
            version=meta.get("liftpeft_version", "?"),
        )
