"""The learned prior as a differentiable penalty on a module's adapter parameters (custom loops).

A prior is defined over the flat vector ``theta`` (``FlatSpec`` order) of the trainable PEFT
tensors. ``AdapterPenalty`` gathers those tensors from any ``torch.nn.Module`` by name, so it works
on a ``peft`` model a user built and trains with their own optimiser:

    penalty(model) = -scale * log p(theta),   p(theta) = sum_j alpha_j f(theta; mu_j, Sigma_j + beta^2)

The value is computed in float64 (``MixturePrior.log_prob``); the gradient is the prior's closed-form
score ``-scale * grad log p(theta)`` (``MixturePrior.grad_log_prob``), handed back to each parameter by
a custom autograd function, so no float64 graph over ``d`` coordinates is built.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from liftpeft.core.mixture_prior import MixturePrior

# wrappers that prefix parameter names: DistributedDataParallel, torch.compile
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class AdapterMismatchError(ValueError):
    """A module whose adapter parameters are not the ones the prior was fitted on."""


class _NegLogPrior(torch.autograd.Function):
    """``-log p(theta)`` of a flat ``theta``; backward uses the prior's closed-form score."""

    @staticmethod
    def forward(ctx, theta: torch.Tensor, prior: MixturePrior) -> torch.Tensor:  # type: ignore[override]
        ctx.prior = prior
        ctx.save_for_backward(theta)
        return (-prior.log_prob(theta.detach())).to(theta.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        (theta,) = ctx.saved_tensors
        score = ctx.prior.grad_log_prob(theta.detach())  # (d,)
        return -grad_output * score, None


def _strip(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix) :], True
    return name


class AdapterPenalty:
    """``-scale * log p(theta)`` of a module's adapter, ``theta`` gathered by parameter name.

    Args:
        prior: the test-time mixture prior over ``theta`` (``d`` coordinates).
        names: the adapter's parameter names in ``theta`` order (the prior's ``FlatSpec.names``);
            ``None`` takes the module's trainable parameters in registration order.
    """

    def __init__(self, prior: MixturePrior, names: Sequence[str] | None = None) -> None:
        self.prior = prior
        self.names = None if names is None else tuple(names)
        self._on: dict[torch.device, MixturePrior] = {}

    def parameters(self, module: torch.nn.Module) -> list[torch.nn.Parameter]:
        """The module's adapter parameters in ``theta`` order (raises ``AdapterMismatchError``)."""
        named = {_strip(n): p for n, p in module.named_parameters()}
        if self.names is None:
            params = [p for p in named.values() if p.requires_grad]
        else:
            missing = [n for n in self.names if n not in named]
            if missing:
                raise AdapterMismatchError(
                    f"the model has no parameter {missing[0]!r} (and {len(missing) - 1} more of the "
                    f"{len(self.names)} the prior was fitted on); build its adapter with the prior's PEFT "
                    "config on the prior's base model (liftpeft.peft_integration.prior_peft_model does)"
                )
            params = [named[n] for n in self.names]
        size = sum(p.numel() for p in params)
        if size != self.prior.dim:
            raise AdapterMismatchError(
                f"the model's adapter has {size} parameters, the prior {self.prior.dim}; use the PEFT config "
                "the prior was fitted with"
            )
        return params

    def flat(self, module: torch.nn.Module) -> torch.Tensor:
        """``theta`` ``(d,)``: the adapter parameters concatenated (differentiable)."""
        return flatten(self.parameters(module))

    def __call__(self, module: torch.nn.Module, scale: float = 1.0) -> torch.Tensor:
        """The scalar ``-scale * log p(theta)``, with gradients to the adapter parameters."""
        theta = self.flat(module)
        return scale * _NegLogPrior.apply(theta, self._prior_on(theta.device))

    def _prior_on(self, device: torch.device) -> MixturePrior:
        if device not in self._on:
            self._on[device] = self.prior.to(device)
        return self._on[device]


def flatten(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors into one flat float32-or-wider vector (autograd flows to each)."""
    parts = [p.reshape(-1) for p in params]
    dtype = torch.promote_types(parts[0].dtype, torch.float32) if parts else torch.float32
    return torch.cat([p.to(dtype) for p in parts])


@torch.no_grad()
def write_flat(params: Sequence[torch.Tensor], theta: torch.Tensor) -> None:
    """Copy a flat ``theta`` ``(d,)`` into ``params`` (in ``theta`` order), in place."""
    sizes = [p.numel() for p in params]
    if sum(sizes) != theta.numel():
        raise AdapterMismatchError(f"theta has {theta.numel()} values, the parameters {sum(sizes)}")
    for param, chunk in zip(params, theta.split(sizes)):
        param.copy_(chunk.view(param.shape).to(param))
