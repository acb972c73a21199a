"""Scale-out: LiFT's sampler data-parallel over tasks (SPEC section 12).

``comm``: the all-reduce of the shared latent's sufficient statistics (one process, or ranks of
``torch.distributed``); ``bank``: the per-task adapters of one rank's shard, in memory or in a file
that outgrows memory; ``keys``: counter-based random streams, so a task's noise does not depend on
which rank visits it; ``latent`` / ``structured_latent``: the shared latents (the paper's ``phi``,
the structured prior's centres and spread) as sufficient statistics; ``warmup``: the non-centred
warm-up; ``sampler``: the sharded SGLD-Gibbs step.
"""

from liftpeft.scale.bank import TaskBank
from liftpeft.scale.comm import (
    Communicator,
    LocalCommunicator,
    TorchDistributedCommunicator,
    from_environment,
)
from liftpeft.scale.sampler import ShardedGibbs, owner_of, shard_of

__all__ = [
    "Communicator",
    "LocalCommunicator",
    "ShardedGibbs",
    "TaskBank",
    "TorchDistributedCommunicator",
    "from_environment",
    "owner_of",
    "shard_of",
]
