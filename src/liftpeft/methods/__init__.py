"""Methods: LiFT and the baselines, behind one interface and one registry (``available_methods``)."""

from liftpeft.methods import lift, no_meta, union  # noqa: F401  (registers the methods)
from liftpeft.methods.base import MetaProblem, Method, available_methods, build_method, register

__all__ = ["MetaProblem", "Method", "available_methods", "build_method", "register"]
