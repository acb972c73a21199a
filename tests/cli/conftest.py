"""Shared settings of the CLI tests."""

# meta-train flags for a LiFT run of a few seconds on a tiny model (with --k 1 --steps 12)
TINY_META_TRAIN = [
    "--quiet",
    "--set",
    "warmup_steps=4",
    "--set",
    "burnin_steps=2",
    "--set",
    "sigma=1",
    "--set",
    "beta=1",
]
