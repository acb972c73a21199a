"""SGLD as a ``torch.optim.Optimizer``, for training loops that minimise a *mean* loss.

A trainer minimises ``loss(theta) = L(theta) + (1 / n_eff) * (-log p(theta))`` with ``L`` the mean
per-example loss and ``n_eff = n / tau`` (``n`` training examples, ``tau`` the likelihood
temperature), i.e. ``loss = U / n_eff`` with ``U(theta) = n_eff L(theta) - log p(theta)`` the
negative log posterior. One step of this optimiser is

    theta <- theta - lr * grad loss(theta) + sqrt(2 lr T / n_eff) * z,     z ~ N(0, I)

which is exactly ``sgld_step`` on ``-U`` with step size ``eta = 2 lr / n_eff`` and temperature ``T``:
``(eta / 2) grad(-U) = -lr grad loss`` and ``sqrt(eta T) = sqrt(2 lr T / n_eff)``. At ``T = 0`` it is
plain SGD. The learning rate a scheduler writes into the parameter group is used at each step, so a
decaying schedule gives the decreasing SGLD steps of Welling & Teh (2011).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from liftpeft.core.sgld import sgld_step


class LangevinSGD(torch.optim.Optimizer):
    """SGD plus Langevin noise ``sqrt(2 lr T / n_eff) z``: SGLD on the posterior of a mean loss.

    Args:
        params: the parameters (or parameter groups) to sample.
        lr: learning rate on the mean loss (the SGLD step size is ``2 lr / n_eff``).
        n_eff: ``n / tau``, the number of training examples over the likelihood temperature.
        temperature: ``T``; 1 samples the posterior, 0 is SGD.
        seed: seed of the noise (one generator per device, drawn in parameter order).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float,
        n_eff: float,
        temperature: float = 1.0,
        seed: int = 0,
    ) -> None:
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr must be a positive finite number, got {lr!r}")
        if not (n_eff > 0 and math.isfinite(n_eff)):
            raise ValueError(f"n_eff (training examples / tau) must be > 0, got {n_eff!r}")
        if not (temperature >= 0 and math.isfinite(temperature)):
            raise ValueError(f"temperature must be finite and >= 0, got {temperature!r}")
        super().__init__(params, {"lr": lr, "n_eff": float(n_eff), "temperature": float(temperature)})
        self.seed = int(seed)
        self._generators: dict[torch.device, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    @staticmethod
    def noise_std(lr: float, n_eff: float, temperature: float) -> float:
        """Standard deviation of the noise added to each coordinate per step: ``sqrt(2 lr T / n_eff)``."""
        return math.sqrt(2.0 * lr * temperature / n_eff)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, n_eff, temp = group["lr"], group["n_eff"], group["temperature"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                new = sgld_step(p, p.grad * -n_eff, 2.0 * lr / n_eff, self._generator(p.device), temp)
                p.copy_(new)
        return loss

    def state_dict(self):  # type: ignore[override]
        out = super().state_dict()
        out["generators"] = {str(d): g.get_state() for d, g in self._generators.items()}
        return out

    def load_state_dict(self, state_dict):  # type: ignore[override]
        state_dict = dict(state_dict)
        generators = state_dict.pop("generators", {})
        super().load_state_dict(state_dict)
        for device, rng_state in generators.items():
            self._generator(torch.device(device)).set_state(rng_state)
