"""Synthetic task families with known structure (tests, documentation, sanity checks, benchmarks).

* ``rule_family`` — text multiple-choice tasks following one of a few hidden rules (``Task`` s for
  any ``transformers`` backbone; see ``rules``).
* ``conjugate_family`` — the conjugate linear-Gaussian hierarchy with closed-form posteriors of
  ``phi`` and of a new task's adapter (``ConjugateBenchmark.phi_posterior`` / ``new_task_prior``).
* ``clustered_family`` — softmax heads on a fixed random MLP feature map, the true heads drawn from a
  few clusters (does a K > 1 prior help?).
* ``sinusoid_family`` — MAML's K-shot sinusoid regression with an MLP 1-40-40-1 as the adapter.

The last three are pure-torch ``TaskObjective`` s: each returns a ``SyntheticBenchmark`` with meta-train /
meta-dev / meta-test task lists and ``theta0``; ``benchmark.meta_problem()`` is what methods train on.
"""

from liftpeft.data.synthetic.base import SyntheticBenchmark, TensorTask, task_generator
from liftpeft.data.synthetic.clustered import (
    ClassificationHead,
    ClusteredBenchmark,
    ClusteredClassificationTask,
    RandomFeatureMap,
    clustered_family,
)
from liftpeft.data.synthetic.conjugate import (
    ConjugateBenchmark,
    GaussianMeanTask,
    IsotropicGaussian,
    conjugate_family,
    conjugate_phi_posterior,
    gaussian_task_posterior,
)
from liftpeft.data.synthetic.rules import RULES, rule_family, rule_task, write_rule_family
from liftpeft.data.synthetic.sinusoid import RegressionMLP, SinusoidBenchmark, SinusoidTask, sinusoid_family

FAMILIES = {
    "conjugate": conjugate_family,
    "clustered": clustered_family,
    "sinusoid": sinusoid_family,
}

__all__ = [
    "FAMILIES",
    "RULES",
    "ClassificationHead",
    "ClusteredBenchmark",
    "ClusteredClassificationTask",
    "ConjugateBenchmark",
    "GaussianMeanTask",
    "IsotropicGaussian",
    "RandomFeatureMap",
    "RegressionMLP",
    "SinusoidBenchmark",
    "SinusoidTask",
    "SyntheticBenchmark",
    "TensorTask",
    "clustered_family",
    "conjugate_family",
    "conjugate_phi_posterior",
    "gaussian_task_posterior",
    "rule_family",
    "rule_task",
    "sinusoid_family",
    "task_generator",
    "write_rule_family",
]
