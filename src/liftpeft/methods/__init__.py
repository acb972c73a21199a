"""Methods: LiFT and the baselines, behind one interface and one registry (``available_methods``)."""

from liftpeft.methods import (  # noqa: F401  (registers the methods)
    lift,
    mbc,
    multilora,
    no_meta,
    protonet,
    retriever,
    union,
    zoo_lift,
)
from liftpeft.methods.base import (
    MetaProblem,
    Method,
    available_methods,
    build_method,
    register,
    scoring_objective,
)

__all__ = ["MetaProblem", "Method", "available_methods", "build_method", "register", "scoring_objective"]
