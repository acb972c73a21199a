"""Sinusoid regression, the few-shot classic of MAML (Finn et al. 2017), as ``TaskObjective`` s.

Task: ``y = A sin(x - b)`` with amplitude ``A ~ U[0.1, 5]``, phase ``b ~ U[0, pi]``, inputs ``x ~ U[-5, 5]``,
no observation noise. Model: an MLP 1-40-40-1 with ReLU whose flat parameter vector (all weights and
biases, ``d = 1761``) is the task adapter; there is no frozen backbone. ``theta0`` is one fixed random
initialisation (PyTorch's ``nn.Linear`` default: weights and biases ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``)
drawn from the family seed. Loss: mean squared error per example; for LiFT this is a Gaussian
likelihood of variance ``tau / 2``.

Splits. A meta-test task has ``k_shot`` training points (K = 5 or 10), ``k_shot`` dev points and
``n_query`` test points, scored by MSE. A meta-training task has ``n_train_meta`` training points
(default ``2 * k_shot``: MAML draws K support plus K query points per task). Unlike MAML, which draws
fresh tasks at every one of its ~70k meta-iterations (meta-batch 25), the training tasks here are a
fixed, finite set; published 5-shot MSE after that budget: MAML 1.13, Meta-SGD 0.90.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import cached_property

import torch

from liftpeft.core.flat import FlatSpec
from liftpeft.data.synthetic.base import SyntheticBenchmark, TensorTask, as_rows, task_generator


@dataclass(frozen=True)
class RegressionMLP:
    """A ReLU MLP ``1 -> hidden... -> 1`` evaluated from a flat parameter vector (no module state)."""

    hidden: tuple[int, ...] = (40, 40)

    @cached_property
    def spec(self) -> FlatSpec:
        widths = (1, *self.hidden, 1)
        names, shapes = [], []
        for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
            names += [f"layer{layer}.weight", f"layer{layer}.bias"]
            shapes += [(fan_out, fan_in), (fan_out,)]
        return FlatSpec(tuple(names), tuple(shapes), ("float32",) * len(names))

    @property
    def dim(self) -> int:
        return self.spec.dim

    def __call__(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Predictions ``(n,)`` for inputs ``x`` (n, 1) at parameters ``theta`` (d,); differentiable."""
        params = list(self.spec.unflatten(theta).values())
        h = x
        for layer in range(len(params) // 2):
            h = h @ params[2 * layer].T + params[2 * layer + 1]  # (n, width)
            if layer < len(params) // 2 - 1:
                h = torch.relu(h)
        return h[:, 0]

    def init(self, generator: torch.Generator) -> torch.Tensor:
        """PyTorch's default ``nn.Linear`` initialisation, from ``generator``: ``(d,)``."""
        parts = []
        shapes = self.spec.shapes
        for weight, bias in zip(shapes[0::2], shapes[1::2]):
            bound = 1.0 / math.sqrt(weight[1])  # 1/sqrt(fan_in) for the layer's weight and bias
            for shape in (weight, bias):
                parts.append(((2 * torch.rand(shape, generator=generator) - 1) * bound).reshape(-1))
        return torch.cat(parts)


class SinusoidTask(TensorTask):
    """One sinusoid ``y = amplitude * sin(x - phase)``; inputs (n, 1) and targets (n,) per split.

    ``evaluate`` scores the mean prediction of ``thetas`` (M, d): ``mse`` (primary) and ``loss`` (the
    same number: the loss is the squared error), ``n``.
    """

    primary_metric = "mse"
    higher_is_better = False

    def __init__(
        self,
        name: str,
        splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
        model: RegressionMLP,
        amplitude: float,
        phase: float,
    ) -> None:
        super().__init__(name, splits)
        self.model = model
        self.amplitude = float(amplitude)
        self.phase = float(phase)

    def per_example_loss(self, theta: torch.Tensor, x: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor:
        assert x is not None
        return (self.model(theta, x.to(theta.dtype)) - y.to(theta.dtype)).square()

    @torch.no_grad()
    def evaluate(self, thetas: torch.Tensor, split: str = "test") -> dict[str, float]:
        rows = as_rows(thetas, self.model.dim)
        x, y = self.batch(split)
        assert x is not None
        prediction = torch.stack([self.model(th, x) for th in rows]).mean(0)  # (n,)
        mse = float((prediction - y).square().mean())
        return {"mse": mse, "loss": mse, "n": float(len(y))}


@dataclass(kw_only=True)
class SinusoidBenchmark(SyntheticBenchmark):
    model: RegressionMLP
    k_shot: int


def sinusoid_family(
    n_train_tasks: int = 1000,
    n_dev_tasks: int = 20,
    n_test_tasks: int = 100,
    k_shot: int = 5,
    *,
    n_train_meta: int | None = None,
    n_query: int = 100,
    hidden: tuple[int, ...] = (40, 40),
    amplitude: tuple[float, float] = (0.1, 5.0),
    phase: tuple[float, float] = (0.0, math.pi),
    x_range: tuple[float, float] = (-5.0, 5.0),
    seed: int = 0,
) -> SinusoidBenchmark:
    """The sinusoid family: meta-training tasks with ``n_train_meta`` points, meta-dev / meta-test
    tasks with ``k_shot`` training points; every task has ``n_query`` test points."""
    if k_shot < 1 or n_train_tasks < 1 or n_query < 1:
        raise ValueError("k_shot, n_train_tasks and n_query must be >= 1")
    n_train_meta = 2 * k_shot if n_train_meta is None else int(n_train_meta)
    model = RegressionMLP(tuple(hidden))

    def uniform(low_high: tuple[float, float], size: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        low, high = low_high
        return low + (high - low) * torch.rand(size, generator=gen)

    def make(role: str, count: int, n_train: int) -> list[SinusoidTask]:
        tasks = []
        for i in range(count):
            gen = task_generator(seed, "sinusoid", role, i)
            amp, ph = float(uniform(amplitude, (), gen)), float(uniform(phase, (), gen))
            splits = {}
            for split, size in (("train", n_train), ("dev", k_shot), ("test", n_query)):
                x = uniform(x_range, (size, 1), task_generator(seed, "sinusoid", role, i, split))
                splits[split] = (x, amp * torch.sin(x[:, 0] - ph))
            tasks.append(SinusoidTask(f"sinusoid-{role}-{i:04d}", splits, model, amp, ph))
        return tasks

    config = {
        "family": "sinusoid",
        "n_train_tasks": n_train_tasks,
        "n_dev_tasks": n_dev_tasks,
        "n_test_tasks": n_test_tasks,
        "k_shot": k_shot,
        "n_train_meta": n_train_meta,
        "n_query": n_query,
        "hidden": list(hidden),
        "amplitude": list(amplitude),
        "phase": list(phase),
        "x_range": list(x_range),
        "seed": seed,
    }
    return SinusoidBenchmark(
        "sinusoid",
        make("train", n_train_tasks, n_train_meta),
        make("dev", n_dev_tasks, k_shot),
        make("test", n_test_tasks, k_shot),
        model.init(task_generator(seed, "sinusoid", "theta0")),
        config,
        model=model,
        k_shot=k_shot,
    )
