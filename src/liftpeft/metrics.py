"""Task metrics computed from predictions (pure Python), shared by the objectives, methods and reports."""

from __future__ import annotations

from collections.abc import Hashable, Sequence


def accuracy(predictions: Sequence[Hashable], references: Sequence[Hashable]) -> float:
    if len(predictions) != len(references) or not references:
        raise ValueError("predictions and references must be non-empty and of equal length")
    return sum(p == r for p, r in zip(predictions, references)) / len(references)


def macro_f1(predictions: Sequence[Hashable], references: Sequence[Hashable]) -> float:
    """Unweighted mean over the reference classes of the per-class F1 (CrossFit's classification metric)."""
    if len(predictions) != len(references) or not references:
        raise ValueError("predictions and references must be non-empty and of equal length")
    scores = []
    for cls in sorted(set(references), key=str):
        tp = sum(p == cls and r == cls for p, r in zip(predictions, references))
        fp = sum(p == cls and r != cls for p, r in zip(predictions, references))
        fn = sum(p != cls and r == cls for p, r in zip(predictions, references))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores)
