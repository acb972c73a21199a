"""LiFT's mathematics on plain tensors. Imports torch only (never transformers or peft).

* ``HierarchicalPrior`` — ``p(phi)`` and ``p(theta_i | phi)`` and the Gaussian conditional of ``phi``.
* ``sgld_step`` / ``psgld_step`` — Langevin kernels with an explicit generator and temperature.
* ``SGLDGibbs`` — the meta-training sampler with ``phi_update`` in ``cavity`` / ``exact`` / ``gibbs``.
* ``OnlineGaussianMixture`` — online-EM diagonal mixture over ``phi`` samples (the learned prior).
* ``MixturePrior`` and ``adapt`` — the test-time prior and SGLD / MAP adaptation.
* ``FlatSpec`` — named tensors as one flat vector.
"""

from liftpeft.core.flat import FlatSpec
from liftpeft.core.gibbs import PHI_UPDATES, NonFiniteError, SGLDGibbs
from liftpeft.core.mixture import NotFittedError, OnlineGaussianMixture
from liftpeft.core.mixture_prior import AdaptResult, MixturePrior, adapt
from liftpeft.core.prior import HierarchicalPrior
from liftpeft.core.sgld import (
    PSGLDState,
    check_step_size,
    max_stable_step_size,
    psgld_init,
    psgld_step,
    sgld_step,
    variance_inflation,
)

__all__ = [
    "PHI_UPDATES",
    "AdaptResult",
    "FlatSpec",
    "HierarchicalPrior",
    "MixturePrior",
    "NonFiniteError",
    "NotFittedError",
    "OnlineGaussianMixture",
    "PSGLDState",
    "SGLDGibbs",
    "adapt",
    "check_step_size",
    "max_stable_step_size",
    "psgld_init",
    "psgld_step",
    "sgld_step",
    "variance_inflation",
]
