"""Task metrics; they live in ``liftpeft.metrics`` (below the methods and the PEFT layer, which use them)."""

from liftpeft.metrics import accuracy, macro_f1

__all__ = ["accuracy", "macro_f1"]
