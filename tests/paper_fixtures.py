"""Small fixtures in the exact file layouts of the paper's benchmarks, written by the tests.

* CrossFit (INK-USC/CrossFit ``tasks/_build_gym.py``): ``<root>/<task>/<task>_<k>_<seed>_<split>.tsv``,
  lines ``input<TAB>output[<TAB>more outputs]``; k = 16 (classification) or 32, seeds 100 13 21 42 87.
* VTAB-1K (the ``vtab-1k`` folder of NOAH / VPT / mmpretrain ``Vtab1K``): ``<root>/<dataset>/{train800,
  val200,train800val200,test}.txt`` with ``<relative image path> <label>`` lines, images beside them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CROSSFIT_TASKS = {  # task -> (k, label texts); the words give each class a learnable cue
    "glue-sst2": (16, ("negative", "positive")),
    "emotion": (16, ("anger", "joy", "sadness")),
    "trec": (16, ("location", "number")),
    "ag_news": (16, ("sports", "world")),
    "superglue-cb": (16, ("entailment", "contradiction")),
}


def write_crossfit(root: Path, n: int = 4, seeds=(100, 13), tasks: list[str] | None = None) -> Path:
    """``n`` lines per class per split of every ``CROSSFIT_TASKS`` task (or of ``tasks``, binary), and a
    split file ``split.json`` of the ``CROSSFIT_TASKS``."""
    chosen = CROSSFIT_TASKS if tasks is None else {t: (16, ("no", "yes")) for t in tasks}
    for task, (k, labels) in chosen.items():
        folder = root / task
        folder.mkdir(parents=True, exist_ok=True)
        for seed in seeds:
            for split in ("train", "dev", "test"):
                lines = [
                    f"{label} sentence {i} of {split} seed {seed}\t{label}"
                    for i in range(n)
                    for label in labels
                ]
                if split == "test":
                    lines.append(f"an unlabelled line of {task}")  # CrossFit's loader skips these
                    lines.append(f"two references\t{labels[0]}\t{labels[0]} too")
                (folder / f"{task}_{k}_{seed}_{split}.tsv").write_text("\n".join(lines) + "\n")
    split = {"train": ["glue-sst2", "emotion", "trec"], "dev": ["ag_news"], "test": ["superglue-cb"]}
    (root / "split.json").write_text(json.dumps(split))
    return root


VTAB_DATASETS = {"dtd": 47, "eurosat": 10, "clevr_count": 8}  # natural, specialized, structured


def write_vtab(
    root: Path, n_train: int = 6, n_val: int = 4, n_test: int = 4, seed: int = 0, datasets=VTAB_DATASETS
) -> Path:
    """PNG images of (up to) three classes per dataset (each class a colour, sizes vary) and the four lists."""
    from PIL import Image

    from liftpeft.data.vtab import CLASSES

    rng = np.random.default_rng(seed)
    for dataset in datasets:
        n_classes = min(3, CLASSES[dataset])
        folder = root / dataset
        (folder / "images").mkdir(parents=True, exist_ok=True)
        lists: dict[str, list[str]] = {}
        for split, count in (("train800", n_train), ("val200", n_val), ("test", n_test)):
            rows = []
            for i in range(count):
                label = i % n_classes
                size = int(rng.integers(10, 20))
                pixels = np.full((size, size, 3), 40, dtype=np.uint8)
                pixels[..., label] = 220
                pixels = (pixels + rng.integers(0, 20, pixels.shape)).astype(np.uint8)
                name = f"images/{split}_{i:03d}.png"
                Image.fromarray(pixels).save(folder / name)
                rows.append(f"{name} {label}")
            lists[split] = rows
        lists["train800val200"] = lists["train800"] + lists["val200"]
        for split, rows in lists.items():
            (folder / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return root
