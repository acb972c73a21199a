"""The schedule of a sampling chain: noise-free warm-up, burn-in, then every ``thin``-th iterate kept.

Step ``t`` (0-based) of a chain of ``steps`` is in the warm-up while ``t < warmup``, in the burn-in
while ``t < warmup + burnin``, and kept as a sample when it is past both and
``(t - warmup - burnin) % thin == 0``. So the chain keeps ``ceil((steps - warmup - burnin) / thin)``
samples.

When only ``steps`` is given, the warm-up and the burn-in follow from it:
``warmup = round(WARMUP_FRACTION * steps)`` and ``burnin = round(BURNIN_FRACTION * steps)`` (5 % and
10 %: the paper's 1,000 and 2,000 of 20,000 steps).
"""

from __future__ import annotations

from dataclasses import dataclass

WARMUP_FRACTION = 0.05
BURNIN_FRACTION = 0.10


def derived_phase_lengths(steps: int, warmup: int | None, burnin: int | None) -> tuple[int, int]:
    """``(warmup, burnin)``: the given lengths, or the stated fractions of ``steps`` for the missing ones."""
    return (
        round(WARMUP_FRACTION * steps) if warmup is None else int(warmup),
        round(BURNIN_FRACTION * steps) if burnin is None else int(burnin),
    )


@dataclass(frozen=True)
class ChainSchedule:
    """Phase lengths of one chain; ``ValueError`` (saying which setting to change) when no sample is kept."""

    steps: int
    warmup: int
    burnin: int
    thin: int = 1
    steps_name: str = "steps"  # the setting's name in error messages

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.burnin < 0 or self.thin < 1:
            raise ValueError(
                f"warmup_steps and burnin_steps must be >= 0 and thin >= 1, "
                f"got {self.warmup}, {self.burnin}, {self.thin}"
            )
        if self.warmup + self.burnin >= self.steps:
            raise ValueError(
                f"{self.steps_name} ({self.steps}) must exceed warmup_steps + burnin_steps "
                f"({self.warmup} + {self.burnin}) so that posterior samples are collected; raise "
                f"{self.steps_name}, or lower warmup_steps / burnin_steps (left unset they are "
                f"{WARMUP_FRACTION:.0%} and {BURNIN_FRACTION:.0%} of {self.steps_name})"
            )

    @property
    def sampling_start(self) -> int:
        return self.warmup + self.burnin

    @property
    def n_samples(self) -> int:
        """Number of iterates the chain keeps."""
        return -(-(self.steps - self.sampling_start) // self.thin)

    def phase(self, step: int) -> str:
        """``"warmup"``, ``"burnin"`` or ``"sampling"``."""
        if step < self.warmup:
            return "warmup"
        if step < self.sampling_start:
            return "burnin"
        return "sampling"

    def keeps(self, step: int) -> bool:
        """Whether the iterate after step ``step`` is kept as a sample."""
        return step >= self.sampling_start and (step - self.sampling_start) % self.thin == 0

    def require_samples(self, needed: int, what: str) -> None:
        """Refuse (before any training) a schedule that keeps fewer than ``needed`` samples for ``what``."""
        if self.n_samples < needed:
            raise ValueError(
                f"the chain keeps {self.n_samples} samples ({self.steps_name} {self.steps} - warm-up "
                f"{self.warmup} - burn-in {self.burnin}, every {self.thin}-th), too few for {what}; "
                f"raise {self.steps_name}, or lower thin, warmup_steps or burnin_steps"
            )
