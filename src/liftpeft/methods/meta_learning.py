"""Machinery shared by the gradient-based meta-learners (MAML family, Reptile, BMAML, ABML).

A meta-learner holds *meta-parameters* -- an initialisation ``(d,)``, K initialisations, M particles
``(M, d)``, a Gaussian's mean and log-std -- as a list of tensors, and improves them with an outer
optimiser (Adam unless a method says otherwise) on meta-gradients averaged over ``tasks_per_step``
training tasks per meta-step. Each visit of a task draws a *support* batch (the inner loop adapts on
it) and a disjoint *query* batch (the meta-loss is measured on it) from the task's train split.

The inner loops are plain SGD written with ``torch.autograd.grad``: with ``create_graph=True`` the
adapted parameters stay a differentiable function of the meta-parameters (second order); without it
each step is detached (first order).

``run_meta_training`` can checkpoint the outer loop (``RunContext.workdir``) and continue a killed run
(``RunContext.resume``) bit for bit: a checkpoint holds the step, the meta-parameters, the outer
optimiser's state, the data generator's and torch's global RNG state, the loss average and whatever
a method carries between steps, in safetensors + JSON, with a fingerprint of the settings, seed,
tasks and starting point; a checkpoint made by another run is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from liftpeft.methods.base import MetaProblem, RunContext
from liftpeft.methods.checkpoint import load_checkpoint, save_checkpoint
from liftpeft.methods.finetune import FINETUNE_TEST_TIME, FinetuneConfig
from liftpeft.objective import TaskObjective
from liftpeft.progress import progress_bar

META_OPTIMIZERS = ("adam", "sgd")


@dataclass
class MetaLearningConfig(FinetuneConfig):
    """Meta-training settings shared by the gradient-based meta-learners.

    Test-time fine-tuning (``adapt_*``, ``weight_decay``) is ``FinetuneConfig``'s: AdamW from the
    meta-learned initialisation, the same budget as No-Meta-Train and Union-Train.
    """

    meta_steps: int = field(default=2000, metadata={"help": "outer (meta-parameter) updates"})
    meta_lr: float = field(default=1e-3, metadata={"help": "learning rate of the outer optimiser"})
    meta_batch_size: int = field(
        default=16, metadata={"help": "examples in each support batch and in each query batch"}
    )
    tasks_per_step: int = field(default=1, metadata={"help": "training tasks averaged per outer update"})
    inner_steps: int = field(default=1, metadata={"help": "SGD steps of the inner loop (paper: 1..5)"})
    inner_lr: float = field(default=5e-3, metadata={"help": "SGD learning rate of the inner loop"})
    meta_optimizer: str = field(default="adam", metadata={"help": "outer optimiser: 'adam' or 'sgd'"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.meta_steps < 0:
            raise ValueError(f"meta_steps must be >= 0, got {self.meta_steps}")
        for name in ("meta_lr", "inner_lr"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        for name in ("meta_batch_size", "tasks_per_step", "inner_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.meta_optimizer not in META_OPTIMIZERS:
            raise ValueError(f"meta_optimizer must be one of {META_OPTIMIZERS}, got {self.meta_optimizer!r}")


@contextlib.contextmanager
def double_backward_safe() -> Iterator[None]:
    """Run attention with the math kernel, whose backward is differentiable again.

    The fused (flash / memory-efficient) scaled-dot-product-attention kernels have no double backward
    (``derivative for aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented``),
    so every second-order computation (MAML through its inner loop, Hessian-vector products) runs
    inside this context. It only affects models that call ``scaled_dot_product_attention``.
    """
    with sdpa_kernel([SDPBackend.MATH]):
        yield


def second_order_context(enabled: bool) -> contextlib.AbstractContextManager[None]:
    return double_backward_safe() if enabled else contextlib.nullcontext()


def support_query(n: int, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint support and query indices, ``batch_size`` each when the split holds ``2 * batch_size``.

    A smaller split is cut in two halves (the support gets the smaller one); a one-example split
    serves as both.
    """
    if n < 1:
        raise ValueError("cannot draw support and query batches from an empty train split")
    perm = torch.randperm(n, generator=generator)
    if n == 1:
        return perm, perm
    cut = min(batch_size, n // 2)
    return perm[:cut], perm[cut : cut + min(batch_size, n - cut)]


def sgd_inner_loop(
    task: TaskObjective,
    theta: torch.Tensor,
    idx: torch.Tensor | Sequence[torch.Tensor],
    *,
    steps: int,
    lr: float,
    differentiable: bool,
) -> tuple[torch.Tensor, float]:
    """``steps`` SGD steps ``theta <- theta - lr * dL_S/dtheta``; returns ``(theta_k, L_S(theta_0))``.

    ``idx`` is one batch used at every step, or one batch per step. With ``differentiable`` the
    result is a differentiable function of ``theta`` (which must then require grad); otherwise each
    step is detached and ``theta_k`` is a fresh leaf that requires grad (first-order MAML).
    """
    batches = [idx] * steps if isinstance(idx, torch.Tensor) else list(idx)
    if len(batches) != steps:
        raise ValueError(f"got {len(batches)} batches for {steps} inner steps")
    if not differentiable:
        theta = theta.detach().requires_grad_(True)
    first_loss = math.nan
    for step, batch in enumerate(batches):
        loss = task.loss(theta, batch, "train")
        if step == 0:
            first_loss = float(loss.detach())
        (grad,) = torch.autograd.grad(loss, theta, create_graph=differentiable)
        theta = theta - lr * grad
        if not differentiable:
            theta = theta.detach().requires_grad_(True)
    return theta, first_loss


@dataclass
class TaskVisit:
    """One training task drawn at one meta-step: its index, objective, support and query batches, and
    the generator every further random draw of the visit must use (reproducibility)."""

    index: int
    task: TaskObjective
    support: torch.Tensor
    query: torch.Tensor
    generator: torch.Generator
    step: int


# A method's work on one visit: ``(meta-loss, one gradient per meta-parameter, or None)``.
TaskStep = Callable[[TaskVisit, list[torch.Tensor]], tuple[float, list[torch.Tensor | None]]]


def make_meta_optimizer(name: str, params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise ValueError(f"meta_optimizer must be one of {META_OPTIMIZERS}, got {name!r}")


CHECKPOINT_DIR = "checkpoint"  # inside RunContext.workdir


def default_checkpoint_every(meta_steps: int) -> int:
    """Steps between checkpoints when ``RunContext.checkpoint_every`` is ``None``: about 20 per run, at
    most every 50 steps."""
    return max(1, min(50, math.ceil(meta_steps / 20)))


def _digest(tensor: torch.Tensor) -> str:
    raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
    return hashlib.sha256(raw.numpy().tobytes()).hexdigest()[:16]


def _run_fingerprint(
    problem: MetaProblem,
    config: MetaLearningConfig,
    seed: int,
    init: Sequence[torch.Tensor],
    desc: str,
    carried: Mapping[str, torch.Tensor],
) -> dict[str, Any]:
    """What determines a run (test-time settings excluded), as JSON would give it back."""
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in FINETUNE_TEST_TIME}
    fingerprint = {
        "method": desc,
        "settings": {"config class": type(config).__name__, **settings},
        "seed": int(seed),
        "training tasks": [t.name for t in problem.train],
        "train split sizes": [t.n_examples("train") for t in problem.train],
        "starting meta-parameters": [
            f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')} {_digest(t)}" for t in init
        ],
        "carried state": {name: list(t.shape) for name, t in sorted(carried.items())},
    }
    return json.loads(json.dumps(fingerprint, default=str))


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(saved) | set(current)):
        old, new = saved.get(key), current.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict) and key == "settings":
            out.extend(
                f"{name} ({old.get(name)!r} there, {new.get(name)!r} now)"
                for name in sorted(set(old) | set(new))
                if old.get(name) != new.get(name)
            )
        else:
            out.append(f"the {key}")
    return out


class _OuterLoop:
    """The state of ``run_meta_training`` between steps, and its checkpoint."""

    def __init__(
        self,
        params: list[torch.Tensor],
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        carried: Mapping[str, torch.Tensor],
        fingerprint: dict[str, Any],
    ) -> None:
        self.params, self.optimizer, self.generator = params, optimizer, generator
        self.carried, self.fingerprint = carried, fingerprint
        self.step = 0
        self.loss_ema = math.nan

    def state_dict(self) -> dict[str, Any]:
        optimizer_state = self.optimizer.state_dict()["state"]
        return {
            "format": "liftpeft meta-learning checkpoint 1",
            "run": self.fingerprint,
            "step": self.step,
            "loss_ema": self.loss_ema,
            "params": {str(i): p.detach() for i, p in enumerate(self.params)},
            "optimizer": {str(i): dict(entry) for i, entry in optimizer_state.items()},
            "generator": self.generator.get_state(),
            "global_rng": torch.get_rng_state(),
            "carried": {name: t.detach() for name, t in self.carried.items()},
        }

    def load_state_dict(self, state: dict[str, Any], folder: Path) -> None:
        if state.get("run") != self.fingerprint:
            differs = _differences(state.get("run") or {}, self.fingerprint)
            raise ValueError(
                f"the checkpoint in {folder} was made by a run with other settings "
                f"({'; '.join(differs) or 'an unreadable fingerprint'}): resume with the original "
                f"settings, or delete {folder} to start this run afresh"
            )
        with torch.no_grad():
            for i, param in enumerate(self.params):
                param.copy_(state["params"][str(i)])
            for name, tensor in self.carried.items():
                tensor.copy_(state["carried"][name])
        full = self.optimizer.state_dict()
        full["state"] = {int(i): entry for i, entry in state.get("optimizer", {}).items()}
        self.optimizer.load_state_dict(full)
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["global_rng"])
        self.step = int(state["step"])
        self.loss_ema = float(state["loss_ema"])


def run_meta_training(
    problem: MetaProblem,
    config: MetaLearningConfig,
    seed: int,
    init: Sequence[torch.Tensor],
    task_step: TaskStep,
    desc: str,
    *,
    run: RunContext | None = None,
    carried: Mapping[str, torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """The outer loop: ``meta_steps`` updates of the meta-parameters ``init`` (returned detached).

    Per step, ``tasks_per_step`` distinct tasks are drawn uniformly; each visit's gradients are
    averaged over the visits that produced one (a ``None`` gradient leaves that meta-parameter out of
    the visit, and a meta-parameter no visit touched is not stepped at all -- Adam's momentum would
    otherwise move it).

    ``run``: with a ``workdir``, a checkpoint is written there every ``checkpoint_every`` steps
    (default ``default_checkpoint_every``) and after the last; with ``resume``, a checkpoint found
    there is continued, bit for bit (one made with other settings raises ``ValueError``).
    ``carried``: tensors that ``task_step`` updates in place from step to step (checkpointed too);
    every other random draw of a visit must come from ``visit.generator``.
    """
    carried = dict(carried or {})
    params = [p.detach().clone().requires_grad_(True) for p in init]
    optimizer = make_meta_optimizer(config.meta_optimizer, params, config.meta_lr)
    generator = torch.Generator().manual_seed(int(seed))
    loop = _OuterLoop(
        params, optimizer, generator, carried, _run_fingerprint(problem, config, seed, init, desc, carried)
    )
    folder = None if run is None or run.workdir is None else Path(run.workdir) / CHECKPOINT_DIR
    every = (run.checkpoint_every if run is not None else None) or default_checkpoint_every(config.meta_steps)
    if every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {every}")
    if folder is not None and run.resume and (folder / "state.json").is_file():
        loop.load_state_dict(load_checkpoint(folder), folder)
    sizes = [t.n_examples("train") for t in problem.train]
    n_tasks = len(problem.train)
    steps = range(loop.step, config.meta_steps)
    bar = progress_bar(steps, total=config.meta_steps, initial=loop.step, desc=desc, unit="step")
    for step in bar:
        chosen = torch.randperm(n_tasks, generator=generator)[: min(config.tasks_per_step, n_tasks)]
        sums: list[torch.Tensor | None] = [None] * len(params)
        counts = [0] * len(params)
        losses = []
        for i in chosen.tolist():
            support, query = support_query(sizes[i], config.meta_batch_size, generator)
            visit = TaskVisit(i, problem.train[i], support, query, generator, step)
            loss, grads = task_step(visit, [p.detach() for p in params])
            for j, grad in enumerate(grads):
                if grad is None:
                    continue
                if not torch.isfinite(grad).all():
                    raise FloatingPointError(
                        f"{desc}: non-finite meta-gradient on task {visit.task.name!r} at meta-step {step}; "
                        "lower inner_lr or meta_lr"
                    )
                sums[j] = grad.detach() if sums[j] is None else sums[j] + grad.detach()
                counts[j] += 1
            losses.append(loss)
        for param, total, count in zip(params, sums, counts):
            param.grad = None if total is None else (total / count).to(param)
        optimizer.step()
        mean_loss = sum(losses) / len(losses)
        loop.loss_ema = mean_loss if math.isnan(loop.loss_ema) else 0.95 * loop.loss_ema + 0.05 * mean_loss
        loop.step = step + 1
        bar.set_postfix(loss=f"{loop.loss_ema:.4f}", refresh=False)
        if folder is not None and (loop.step % every == 0 or loop.step == config.meta_steps):
            save_checkpoint(folder, loop.state_dict())
    return [p.detach() for p in params]


def selection_indices(task: TaskObjective, limit: int = 64) -> torch.Tensor:
    """The first ``limit`` train examples: where a method compares its candidate starting points."""
    return torch.arange(min(task.n_examples("train"), limit))
