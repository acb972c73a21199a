"""LiFT's variants: mixtures with other K fitted on the same chain (``extra_k``), run as methods of their own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from liftpeft.learned_prior import LearnedPrior


class PriorVariants:
    """Variants ``{name}-k{K}`` of a method whose state is a ``LearnedPrior`` with ``siblings``."""

    def __init__(self, extra_k: Callable[[Any], list[int]]) -> None:
        self._extra_k = extra_k

    def names(self, config: Any) -> list[str]:
        return [f"k{k}" for k in self._extra_k(config)]

    def states(self, state: LearnedPrior) -> dict[str, LearnedPrior]:
        return {f"k{k}": sibling for k, sibling in state.siblings.items()}

    def row_settings(self, state: LearnedPrior) -> dict[str, Any]:
        """Settings a result row records for ``state`` (its own K; the K sweep is in other rows)."""
        return {"k": state.n_components, "extra_k": []}


LIFT_VARIANTS = PriorVariants(lambda config: [] if config.structured else list(config.extra_k))
SINGLE_PRIOR = PriorVariants(lambda config: [])
