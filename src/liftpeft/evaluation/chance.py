"""Chance levels of multiple-choice tasks; they live in ``liftpeft.tasks.chance`` (the data loaders use them)."""

from liftpeft.tasks.chance import chance_accuracy, majority_class_rate

__all__ = ["chance_accuracy", "majority_class_rate"]
