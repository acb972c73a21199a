"""Methods: LiFT and the baselines, behind one interface and one registry (``available_methods``).

Importing this package registers every method.
"""

from liftpeft.methods import (  # noqa: F401  (registers the methods)
    abml,
    arrow,
    bmaml,
    bootstrapped_maml,
    imaml,
    init_mixture,
    lift,
    lift_sample_approx,
    lorahub,
    maml,
    mbc,
    multilora,
    no_meta,
    protonet,
    reptile,
    retriever,
    shared_bayes,
    taskwise_bayes,
    union,
    zoo_lift,
    zoo_merge,
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
