"""liftpeft: learning to fine-tune with a meta-learned Bayesian prior over PEFT adapters."""

from liftpeft._version import __version__

__all__ = ["__version__"]
