"""LiFT's hyperparameters; defaults are the paper's where it gives them (SPEC sections 1-4)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from liftpeft.core.gibbs import PHI_UPDATES
from liftpeft.core.schedule import BURNIN_FRACTION, WARMUP_FRACTION, ChainSchedule, derived_phase_lengths
from liftpeft.core.sgld import gain_cap
from liftpeft.core.structured import SPREADS
from liftpeft.core.warmup import INIT_PARTITIONS

# the settings of LiftConfig that only affect test-time adaptation
LIFT_TEST_TIME = (
    "adapt_steps",
    "adapt_step_size",
    "adapt_method",
    "adapt_temperature",
    "adapt_keep_last",
    "adapt_batch_size",
    "adapt_beta_scale",
    "adapt_start",
)

ADAPT_STARTS = ("best", "all")


TASK_BANKS = ("memory", "file")


@dataclass
class LiftConfig:
    """Settings of LiFT meta-training and test-time adaptation.

    The likelihood of task ``i`` is ``exp(-(n_i / tau) L_i(theta_i))`` with ``L_i`` its mean per-example
    loss and ``n_i`` its number of training examples.
    """

    k: int = field(
        default=5,
        metadata={"help": "components of the paper's mixture over phi samples (unstructured prior)"},
    )
    extra_k: list[int] = field(
        default_factory=list, metadata={"help": "also fit mixtures with these K on the same chain (K sweeps)"}
    )
    sigma: float = field(default=0.01, metadata={"help": "std of p(phi) around the PEFT initialisation"})
    beta: float = field(default=0.01, metadata={"help": "std of p(theta_i | phi)"})
    phi_update: str = field(default="gibbs", metadata={"help": "cavity | exact | gibbs | sample (ablation)"})
    temperature: float = field(default=1.0, metadata={"help": "SGLD temperature (0 = optimisation)"})
    tau: float = field(default=1.0, metadata={"help": "likelihood temperature: scales n_i/tau"})
    step_size: float = field(default=1e-3, metadata={"help": "SGLD step size for the task adapters"})
    phi_step_size: float | None = field(default=None, metadata={"help": "SGLD step for phi (cavity/exact)"})
    preconditioner: str | None = field(default="rmsprop", metadata={"help": "None or 'rmsprop' (pSGLD)"})
    gain_cap: bool = field(
        default=False,
        metadata={
            "help": "cap pSGLD's gain where only the prior constrains a coordinate (a step there is "
            "0.4 of the prior's stable step); off: the original pSGLD, whose gain reaches 1e5 where a "
            "gradient is zero, e.g. LoRA's A while B = 0"
        },
    )
    steps: int = field(default=20_000, metadata={"help": "total meta-training steps"})
    warmup_steps: int | None = field(
        default=None,
        metadata={"help": f"noise-free optimisation steps first (default {WARMUP_FRACTION:.0%} of steps)"},
    )
    warmup_lr: float = field(default=1e-3, metadata={"help": "Adam learning rate of the warm-up"})
    burnin_steps: int | None = field(
        default=None,
        metadata={"help": f"SGLD steps before samples are kept (default {BURNIN_FRACTION:.0%} of steps)"},
    )
    thin: int = field(default=10, metadata={"help": "keep every thin-th phi as a posterior sample"})
    batch_size: int = field(default=16, metadata={"help": "examples per task minibatch"})
    tasks_per_step: int = field(default=1, metadata={"help": "tasks updated per SGLD-Gibbs step"})
    mixture_buffer: int | None = field(
        default=None, metadata={"help": "samples buffered to initialise the mixture"}
    )
    checkpoint_every: int = field(default=500, metadata={"help": "steps between checkpoints"})
    sync_every: int = field(
        default=1,
        metadata={
            "help": "steps between a sharded run's all-reduces of the shared statistics; phi is redrawn "
            "at each, exactly from the statistics of all adapters (1: every step)"
        },
    )
    task_bank: str = field(
        default="memory",
        metadata={
            "help": "memory | file: where a sharded run (torchrun) keeps the task adapters; file pages them "
            "in from a .npy bank per rank, so memory stays independent of the number of tasks"
        },
    )
    log_every: int = field(default=50, metadata={"help": "steps between metrics-log lines"})
    adapt_steps: int = field(default=100, metadata={"help": "test-time adaptation steps"})
    adapt_step_size: float | None = field(default=None, metadata={"help": "defaults to step_size"})
    adapt_method: str = field(default="sgld", metadata={"help": "sgld | map"})
    adapt_temperature: float = field(default=1.0, metadata={"help": "SGLD temperature at test time"})
    adapt_keep_last: int = field(default=1, metadata={"help": "samples averaged in the predictive"})
    adapt_batch_size: int | None = field(default=None, metadata={"help": "defaults to batch_size"})
    adapt_beta_scale: float = field(
        default=1.0,
        metadata={"help": "test-time width of the task prior: beta x this (1 = the model's own beta)"},
    )
    adapt_start: str = field(
        default="best",
        metadata={
            "help": "mixture prior, component to adapt from: best (lowest train loss at the component "
            "means, the paper) | all (adapt from every component, keep the run with the lowest train "
            "loss after adaptation; K times the cost)"
        },
    )
    # the structured prior (SPEC section 10); each is a switch, all off is the paper's model
    spread: str = field(
        default="fixed",
        metadata={"help": "task spread: fixed (beta, the paper) | learned per global | tensor | coordinate"},
    )
    spread_a0: float = field(
        default=1.0, metadata={"help": "inverse-gamma shape of the learned spread's hyperprior (scale beta)"}
    )
    clusters: int = field(
        default=1, metadata={"help": "task clusters with their own centres (1 = one shared centre)"}
    )
    cluster_alpha: float = field(default=1.0, metadata={"help": "Dirichlet concentration per cluster"})
    cluster_init: str | None = field(
        default=None,
        metadata={
            "help": "first partition of the tasks: offsets (k-means of their adapters after a shared "
            "warm-up; the default) | random (balanced; the default of a sharded run) | gradients "
            "(k-means of their gradients)"
        },
    )
    shared_warmup: float | None = field(
        default=None,
        metadata={
            "help": "fraction of the warm-up with one shared centre before the first partition "
            "(gradients, offsets; default 0.25, offsets 0.5)"
        },
    )
    warmup_reassign: bool | None = field(
        default=None,
        metadata={
            "help": "after the first partition, move each visited warm-up task to the centre that fits it "
            "best (default: yes, except after offsets seeding; with few examples per task every centre "
            "fits and reassignment collapses clusters)"
        },
    )
    tail_dof: float | None = field(
        default=None, metadata={"help": "Student-t task prior with these degrees of freedom (None: Gaussian)"}
    )

    def __post_init__(self) -> None:
        if self.sync_every < 1:
            raise ValueError(f"sync_every must be >= 1, got {self.sync_every}")
        if self.task_bank not in TASK_BANKS:
            raise ValueError(f"task_bank must be one of {TASK_BANKS}, got {self.task_bank!r}")
        if self.k < 1 or any(k < 1 for k in self.extra_k):
            raise ValueError(f"k and extra_k must be >= 1, got k={self.k}, extra_k={self.extra_k}")
        self.extra_k = sorted({int(k) for k in self.extra_k} - {self.k})
        if self.phi_update not in PHI_UPDATES:
            raise ValueError(f"phi_update must be one of {PHI_UPDATES}, got {self.phi_update!r}")
        if self.preconditioner not in (None, "rmsprop"):
            raise ValueError(f"preconditioner must be None or 'rmsprop', got {self.preconditioner!r}")
        for name in ("sigma", "beta", "tau", "step_size", "warmup_lr", "adapt_beta_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        # Unset phase lengths follow from ``steps`` (stated fractions); the resolved values are stored.
        self.warmup_steps, self.burnin_steps = derived_phase_lengths(
            self.steps, self.warmup_steps, self.burnin_steps
        )
        if self.structured:
            self.schedule.require_samples(1, "the structured prior's posterior summary")
        else:
            self.schedule.require_samples(
                max([self.k, *self.extra_k]), f"a mixture of K={max([self.k, *self.extra_k])}"
            )
        if self.adapt_method not in ("sgld", "map"):
            raise ValueError(f"adapt_method must be 'sgld' or 'map', got {self.adapt_method!r}")
        if self.batch_size < 1 or self.tasks_per_step < 1 or self.adapt_keep_last < 1:
            raise ValueError("batch_size, tasks_per_step and adapt_keep_last must be >= 1")
        if self.spread not in SPREADS:
            raise ValueError(f"spread must be one of {SPREADS}, got {self.spread!r}")
        if self.clusters < 1:
            raise ValueError(f"clusters must be >= 1, got {self.clusters}")
        if self.cluster_init is not None and self.cluster_init not in INIT_PARTITIONS:
            raise ValueError(f"cluster_init must be one of {INIT_PARTITIONS}, got {self.cluster_init!r}")
        if self.adapt_start not in ADAPT_STARTS:
            raise ValueError(f"adapt_start must be one of {ADAPT_STARTS}, got {self.adapt_start!r}")
        if self.shared_warmup is not None and not 0.0 <= self.shared_warmup < 1.0:
            raise ValueError(f"shared_warmup must be in [0, 1), got {self.shared_warmup}")
        if self.tail_dof is not None and not self.tail_dof > 0:
            raise ValueError(f"tail_dof must be > 0 (or unset for Gaussian tails), got {self.tail_dof}")
        if not (self.spread_a0 > 0 and self.cluster_alpha > 0):
            raise ValueError("spread_a0 and cluster_alpha must be > 0")
        if self.structured and self.phi_update != "gibbs":
            raise ValueError(
                "the structured prior (spread, clusters, tail_dof) draws its centres exactly; "
                f"leave phi_update at 'gibbs' (got {self.phi_update!r})"
            )

    @property
    def structured(self) -> bool:
        """Whether any piece of the structured prior is on (then ``k`` and ``extra_k`` are unused: the
        prior's components are the task clusters)."""
        return self.spread != "fixed" or self.clusters > 1 or self.tail_dof is not None

    @property
    def theta_max_gain(self) -> float | None:
        """The pSGLD gain cap of the task adapters' steps (``gain_cap``; from the task prior's
        curvature ``1/beta^2``), or ``None``."""
        if not (self.gain_cap and self.preconditioner):
            return None
        return gain_cap(self.step_size, 1.0 / self.beta**2)

    @property
    def partition(self) -> str:
        """The first partition of a one-process run (``cluster_init``, default ``"offsets"``)."""
        return self.cluster_init or "offsets"

    @property
    def cluster_seed_step(self) -> int:
        """The warm-up step at which the tasks are first partitioned (``shared_warmup`` of the warm-up)."""
        default = 0.5 if self.partition == "offsets" else 0.25
        fraction = default if self.shared_warmup is None else self.shared_warmup
        return int(self.warmup_steps * fraction)

    @property
    def reassigns_in_warmup(self) -> bool:
        """Whether the clustered warm-up reassigns tasks after the first partition."""
        if self.warmup_reassign is not None:
            return bool(self.warmup_reassign)
        return self.partition != "offsets"

    @property
    def schedule(self) -> ChainSchedule:
        """Warm-up, burn-in and thinning of the meta-training chain (raises if it keeps no sample)."""
        return ChainSchedule(self.steps, self.warmup_steps, self.burnin_steps, self.thin)

    @property
    def n_samples(self) -> int:
        """Number of phi samples the mixture receives."""
        return self.schedule.n_samples

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
