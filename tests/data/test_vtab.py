"""VTAB-1K: the vtab-1k list layout, leave-one-group-out, and a tiny ViT with LoRA on the tasks."""

import numpy as np
import pytest
import torch

pytest.importorskip("PIL")

from liftpeft.bench import build_benchmark, load_bench_config
from liftpeft.bench.runner import validate_bench_config
from liftpeft.data.vtab import CLASSES, GROUPS, VtabConfig, load_vtab, read_list, read_vtab_task, vtab_split
from liftpeft.objective import loss_and_grad
from liftpeft.tasks.jsonl import TaskFormatError
from tests.paper_fixtures import VTAB_DATASETS, write_vtab


@pytest.fixture(scope="module")
def vtab_root(tmp_path_factory):
    return write_vtab(tmp_path_factory.mktemp("vtab") / "vtab-1k")


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    from liftpeft.peft_integration.tiny import make_tiny_model

    return make_tiny_model("vit", tmp_path_factory.mktemp("vit") / "vit")


def test_the_19_datasets_in_three_groups():
    assert [len(GROUPS[g]) for g in ("natural", "specialized", "structured")] == [7, 4, 8]
    assert sorted(d for g in GROUPS.values() for d in g) == sorted(CLASSES) and len(CLASSES) == 19


def test_leave_one_group_out():
    split = vtab_split(VtabConfig(root="x", held_out="specialized"))
    assert split["test"] == list(GROUPS["specialized"]) and len(split["train"]) == 15
    assert not set(split["train"]) & set(split["test"])
    with pytest.raises(ValueError, match="no meta-train or no meta-test"):
        vtab_split(VtabConfig(root="x", held_out="natural", datasets=("dtd",)))
    with pytest.raises(ValueError, match="held_out must be one of"):
        VtabConfig(root="x", held_out="medical")


def test_a_dataset_reads_as_an_image_task(vtab_root):
    assert read_list(vtab_root / "dtd" / "train800val200.txt")[0] == ("images/train800_000.png", 0)
    task = read_vtab_task(vtab_root, "eurosat", VtabConfig(root=str(vtab_root), image_size=16))
    assert task.domain == "specialized" and len(task.classes) == 10
    assert task.train_images.shape == (6, 16, 16, 3) and task.train_images.dtype == np.uint8
    assert list(task.train_labels) == [0, 1, 2, 0, 1, 2] and len(task.test_labels) == 4  # val200
    red, green = task.train_images[0].mean((0, 1)), task.train_images[1].mean((0, 1))
    assert red.argmax() == 0 and green.argmax() == 1  # the pixels of the listed files, in list order
    test = read_vtab_task(
        vtab_root, "eurosat", VtabConfig(root=str(vtab_root), image_size=16, test_list="test")
    )
    assert test.test_images.shape[0] == 4


def test_bad_lists_are_named(vtab_root, tmp_path):
    (tmp_path / "kitti").mkdir()
    (tmp_path / "kitti" / "train800.txt").write_text("images/a.png 7\n")
    (tmp_path / "kitti" / "val200.txt").write_text("images/a.png\n")
    config = VtabConfig(root=str(tmp_path))
    with pytest.raises(TaskFormatError, match=r"val200.txt:1: expected '<image path> <integer label>'"):
        read_vtab_task(tmp_path, "kitti", config)
    (tmp_path / "kitti" / "val200.txt").write_text("images/a.png 1\n")
    with pytest.raises(TaskFormatError, match=r"label 7 is outside 0..3 \(kitti has 4 classes\)"):
        read_vtab_task(tmp_path, "kitti", config)
    with pytest.raises(FileNotFoundError, match="set root to the vtab-1k folder"):
        load_vtab({"root": str(tmp_path / "elsewhere"), "datasets": ["dtd", "kitti"]})


def test_tiny_vit_with_lora_trains_on_vtab(vtab_root, tiny_vit, one_thread):
    shipped = load_bench_config("vtab-1k")
    validate_bench_config(shipped)
    assert shipped["settings"]["peft"]["r"] == 4 and shipped["settings"]["image_size"] == 224
    settings = {
        **shipped["settings"],
        "model": str(tiny_vit),
        "root": str(vtab_root),
        "datasets": list(VTAB_DATASETS),
        "held_out": "natural",
        "image_size": 24,
        "device": "cpu",
        "eval_batch_size": 8,
    }
    data = build_benchmark("vtab-1k", settings)
    assert [o.name for o in data.problem.train] == ["clevr_count", "eurosat"]
    assert [o.name for o in data.test] == ["dtd"]
    assert data.info["backbone"]["n_way"] == 47  # as wide as dtd's 47 classes
    task = data.problem.train[1]
    theta0 = data.problem.theta0
    loss, grad = loss_and_grad(task, theta0, torch.arange(4))
    assert np.isfinite(loss) and abs(loss - np.log(10)) < 1e-4  # zero head: uniform over eurosat's 10
    grads = task.backbone.spec.unflatten(grad)
    assert grads["head.weight"][:10].abs().sum() > 0  # a zero linear head: only the head moves first
    assert grads["head.weight"][10:].abs().sum() == 0  # rows past the task's classes are unused
    theta1 = theta0 - 0.5 * grad / grad.norm()
    lowered, grad1 = loss_and_grad(task, theta1, torch.arange(4))
    assert lowered < loss
    lora = {n: g for n, g in task.backbone.spec.unflatten(grad1).items() if "lora_" in n}
    assert lora and any(g.abs().sum() > 0 for g in lora.values())  # then LoRA inside the ViT gets gradient
    metrics = data.test[0].evaluate(theta0)
    assert metrics["chance_accuracy"] == pytest.approx(1 / 47) and metrics["n"] == 4.0
