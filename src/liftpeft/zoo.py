"""A prior from a zoo of already fine-tuned adapters, without meta-training (SPEC section 5).

``zoo_prior`` works on tensors (``liftpeft.zoo_prior``, usable by methods); ``load_adapter_zoo``
reads ``peft`` adapter directories and refuses, naming it, any adapter made for another base model
or with another adapter shape (``liftpeft.peft_integration.zoo``, checks in ``zoo_check``);
``export_components`` writes a prior's components as plain peft adapters. This module offers them.
"""

from liftpeft.peft_integration.zoo import ADAPTER_CONFIG, AdapterZoo, expand_adapter_dirs, load_adapter_zoo
from liftpeft.peft_integration.zoo_export import COMPONENTS, export_components
from liftpeft.zoo_prior import fit_zoo_mixture, zoo_prior

__all__ = [
    "ADAPTER_CONFIG",
    "COMPONENTS",
    "AdapterZoo",
    "expand_adapter_dirs",
    "export_components",
    "fit_zoo_mixture",
    "load_adapter_zoo",
    "zoo_prior",
]
