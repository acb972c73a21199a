"""VTAB-1K (Zhai et al. 2019): the 19 image datasets of 1,000 training images, as image tasks.

Layout: the ``vtab-1k`` folder that the PEFT literature shares (NOAH, VPT, and the mmpretrain
``Vtab1K`` dataset read it)::

    <root>/<dataset>/train800.txt  val200.txt  train800val200.txt  test.txt
    <root>/<dataset>/images/...                     (the files those lists name)

Each list line is ``<path relative to the dataset folder> <integer label>``. Every dataset is one task
(its class count from ``CLASSES``): ``train_list`` (default ``train800``) trains and ``test_list``
(default ``val200``; ``test`` for the final numbers) is scored, at most ``max_test`` images, resized
to ``image_size`` pixels. The meta split is the paper's leave-one-group-out: meta-test on the
datasets of ``held_out`` (natural, specialized or structured), meta-train on the other groups'.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from liftpeft.tasks.image import ImageTask
from liftpeft.tasks.jsonl import TaskFormatError

GROUPS: dict[str, tuple[str, ...]] = {
    "natural": ("caltech101", "cifar", "dtd", "oxford_flowers102", "oxford_iiit_pet", "svhn", "sun397"),
    "specialized": ("patch_camelyon", "eurosat", "resisc45", "diabetic_retinopathy"),
    "structured": (
        "clevr_count",
        "clevr_dist",
        "dmlab",
        "kitti",
        "dsprites_loc",
        "dsprites_ori",
        "smallnorb_azi",
        "smallnorb_ele",
    ),
}
CLASSES: dict[str, int] = {
    "caltech101": 102, "cifar": 100, "dtd": 47, "oxford_flowers102": 102, "oxford_iiit_pet": 37,
    "svhn": 10, "sun397": 397, "patch_camelyon": 2, "eurosat": 10, "resisc45": 45,
    "diabetic_retinopathy": 5, "clevr_count": 8, "clevr_dist": 6, "dmlab": 6, "kitti": 4,
    "dsprites_loc": 16, "dsprites_ori": 16, "smallnorb_azi": 18, "smallnorb_ele": 9,
}  # fmt: skip
LISTS = ("train800", "val200", "train800val200", "test")
_HINT = "set root to the vtab-1k folder (<root>/<dataset>/train800.txt, ...)"


@dataclass(frozen=True)
class VtabConfig:
    """Where VTAB-1K is and which lists make the tasks and the meta split."""

    root: str | None = field(default=None, metadata={"help": "the vtab-1k folder"})
    held_out: str = field(
        default="natural", metadata={"help": "meta-test group: natural | specialized | structured"}
    )
    datasets: tuple[str, ...] | None = field(default=None, metadata={"help": "datasets used (None: all 19)"})
    train_list: str = field(default="train800", metadata={"help": "list that trains each task"})
    test_list: str = field(default="val200", metadata={"help": "list that scores each task (val200 | test)"})
    image_size: int = field(default=224, metadata={"help": "images are resized to this square size"})
    max_test: int | None = field(default=None, metadata={"help": "cap on scored images per task"})

    def __post_init__(self) -> None:
        if self.root is None:
            raise ValueError(f"the VTAB-1K benchmark needs settings root; {_HINT}")
        if self.held_out not in GROUPS:
            raise ValueError(f"held_out must be one of {sorted(GROUPS)}, got {self.held_out!r}")
        for name in (self.train_list, self.test_list):
            if name not in LISTS:
                raise ValueError(f"train_list / test_list must be one of {LISTS}, got {name!r}")
        unknown = sorted(set(self.datasets or ()) - set(CLASSES))
        if unknown:
            raise ValueError(f"unknown VTAB-1K dataset(s) {unknown}; known: {sorted(CLASSES)}")
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(cls.__dataclass_fields__)


def read_list(path: Path) -> list[tuple[str, int]]:
    """``(relative image path, label)`` per line of a VTAB-1K list file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; {_HINT}")
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        name, _, label = line.strip().rpartition(" ")
        if not name or not label.lstrip("-").isdigit():
            raise TaskFormatError(f"{path}:{lineno}: expected '<image path> <integer label>', got {line!r}")
        rows.append((name, int(label)))
    return rows


def _load_images(folder: Path, rows: list[tuple[str, int]], size: int) -> np.ndarray:
    from PIL import Image

    out = np.empty((len(rows), size, size, 3), dtype=np.uint8)
    for i, (name, _) in enumerate(rows):
        with Image.open(folder / name) as image:
            out[i] = np.asarray(image.convert("RGB").resize((size, size), Image.BICUBIC))
    return out


def read_vtab_task(root: str | Path, dataset: str, config: VtabConfig) -> ImageTask:
    """One VTAB-1K dataset as an ``ImageTask`` (train: ``train_list``; test: ``test_list``)."""
    folder = Path(root).expanduser() / dataset
    train = read_list(folder / f"{config.train_list}.txt")
    test = read_list(folder / f"{config.test_list}.txt")[: config.max_test]
    n = CLASSES[dataset]
    for name, rows in ((config.train_list, train), (config.test_list, test)):
        bad = [label for _, label in rows if not 0 <= label < n]
        if bad:
            raise TaskFormatError(
                f"{folder / name}.txt: label {bad[0]} is outside 0..{n - 1} ({dataset} has {n} classes)"
            )
    if not train:
        raise TaskFormatError(f"{folder / config.train_list}.txt lists no images")
    return ImageTask(
        name=dataset,
        domain=next(g for g, members in GROUPS.items() if dataset in members),
        classes=tuple(str(c) for c in range(n)),
        train_images=_load_images(folder, train, config.image_size),
        train_labels=np.array([label for _, label in train], dtype=np.int64),
        test_images=_load_images(folder, test, config.image_size),
        test_labels=np.array([label for _, label in test], dtype=np.int64),
    )


def vtab_split(config: VtabConfig) -> dict[str, list[str]]:
    """Leave-one-group-out: ``test`` = the held-out group's datasets, ``train`` = the others'."""
    used = set(config.datasets or CLASSES)
    test = [d for d in GROUPS[config.held_out] if d in used]
    train = [d for g, members in GROUPS.items() if g != config.held_out for d in members if d in used]
    if not train or not test:
        raise ValueError(
            f"datasets {sorted(used)} leave no meta-train or no meta-test dataset with held_out={config.held_out!r}"
        )
    return {"train": train, "dev": [], "test": test}


def load_vtab(settings: dict[str, Any]) -> dict[str, list[ImageTask]]:
    """The meta-train / meta-dev (empty) / meta-test image tasks of the leave-one-group-out split."""
    fields = {k: v for k, v in settings.items() if k in VtabConfig.names()}
    if fields.get("datasets") is not None:
        fields["datasets"] = tuple(fields["datasets"])
    config = VtabConfig(**fields)
    return {
        s: [read_vtab_task(config.root, d, config) for d in names] for s, names in vtab_split(config).items()
    }
