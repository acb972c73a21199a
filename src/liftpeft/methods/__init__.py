"""Methods: LiFT and the baselines, behind one interface and one registry (``available_methods``)."""

from liftpeft.methods import lift, no_meta, union  # noqa: F401  (registers the methods)
from liftpeft.methods.abml import Abml  # noqa: F401
from liftpeft.methods.base import MetaProblem, Method, available_methods, build_method, register
from liftpeft.methods.bmaml import Bmaml  # noqa: F401
from liftpeft.methods.bootstrapped_maml import BootstrappedMaml  # noqa: F401
from liftpeft.methods.imaml import Imaml  # noqa: F401
from liftpeft.methods.init_mixture import ImamlMix, MamlMix  # noqa: F401
from liftpeft.methods.lift_sample_approx import LiftSampleApprox  # noqa: F401
from liftpeft.methods.maml import FoMaml, Maml  # noqa: F401
from liftpeft.methods.reptile import Reptile  # noqa: F401
from liftpeft.methods.shared_bayes import SharedBayes  # noqa: F401
from liftpeft.methods.taskwise_bayes import TaskwiseBayes  # noqa: F401

__all__ = ["MetaProblem", "Method", "available_methods", "build_method", "register"]
