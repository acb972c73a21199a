"""EfficientNet-Lite + peft LoRA + N-way head on a tiny random network, and the vision-xdomain bench."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from liftpeft.data import vision as vision_data
from liftpeft.data.vision import ImageSet, convert_state_file
from liftpeft.peft_integration.vision import (
    EfficientNetLite,
    VisionBackbone,
    VisionTaskObjective,
    load_lite0,
)
from liftpeft.tasks.image import ImageTask

TINY_PEFT = {"r": 2, "lora_alpha": 4, "target_modules": r".*_blocks\.3\._(expand|project)_conv|_conv_head"}


def _task(n_way: int = 3, k: int = 2, n_test: int = 2, seed: int = 0) -> ImageTask:
    rng = np.random.default_rng(seed)

    def images(labels):
        base = (labels[:, None, None, None] * 80).astype(np.float64)
        return np.clip(base + rng.normal(0, 10, (len(labels), 12, 12, 3)), 0, 255).astype(np.uint8)

    train_y, test_y = np.repeat(np.arange(n_way), k), np.repeat(np.arange(n_way), n_test)
    return ImageTask(
        "t", "fake", tuple(map(str, range(n_way))), images(train_y), train_y, images(test_y), test_y
    )


def _backbone(**kw) -> VisionBackbone:
    torch.manual_seed(0)
    return VisionBackbone(load_lite0(None, tiny=True), TINY_PEFT, n_way=3, image_size=16, **kw)


def test_lite0_has_the_checkpoints_296_tensors_and_loads_converted_weights(tmp_path):
    net = EfficientNetLite()
    state = net.state_dict()
    assert len(state) == 296 and tuple(state["_fc.weight"].shape) == (1000, 1280)
    assert tuple(state["_blocks.15._depthwise_conv.weight"].shape) == (1152, 1, 3, 3)
    tiny = EfficientNetLite(((1, 3, 1, 8, 1),), stem=8, head=16, n_classes=4)
    buf = io.BytesIO()
    torch.save(tiny.state_dict(), buf)
    out = convert_state_file(buf.getvalue(), tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="does not fit"):
        load_lite0(out)  # a tiny checkpoint is not Lite0: refused, saying what to do


def test_prefix_cache_gives_the_same_loss_and_gradient():
    task = _task()
    cached, plain = _backbone(prefix_cache=True), _backbone(prefix_cache=False)
    assert cached.split == 3 and plain.split == 0
    assert torch.equal(cached.theta0, plain.theta0)
    theta = cached.theta0 + 0.01 * torch.randn(cached.dim, generator=torch.Generator().manual_seed(1))
    grads = []
    for bb in (cached, plain):
        leaf = theta.clone().requires_grad_(True)
        loss = VisionTaskObjective(bb, task).loss(leaf, torch.tensor([0, 3]))
        (grad,) = torch.autograd.grad(loss, leaf)
        grads.append((float(loss.detach()), grad))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-5)
    assert grads[0][1].abs().sum() > 0


@pytest.mark.parametrize("head", ["prototype", "linear"])
def test_heads_zero_shot_and_adaptation(head):
    bb = _backbone(head=head)
    obj = VisionTaskObjective(bb, _task())
    start = obj.evaluate(bb.theta0)
    assert set(start) >= {"accuracy", "macro_f1", "loss", "chance_accuracy"}
    if head == "linear":
        assert start["loss"] == pytest.approx(np.log(3), rel=1e-5)  # a zero head is uniform
    theta = bb.theta0.clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=0.05)
    first = float(obj.loss(theta).detach())
    for _ in range(15):
        opt.zero_grad()
        obj.loss(theta).backward()
        opt.step()
    assert float(obj.loss(theta).detach()) < first
    both = obj.evaluate(torch.stack([bb.theta0, theta.detach()]))
    assert 0.0 <= both["accuracy"] <= 1.0 and both["n"] == 6.0
    assert 0.0 <= obj.linear_probe()["accuracy"] <= 1.0


def test_bad_inputs_say_what_to_do():
    with pytest.raises(ValueError, match="head must be"):
        _backbone(head="mlp")
    with pytest.raises(ValueError, match=r"matched no module|target_modules"):
        VisionBackbone(load_lite0(None, tiny=True), {"r": 2, "target_modules": ["nothing"]}, n_way=3)
    with pytest.raises(ValueError, match="3-way"):
        VisionTaskObjective(_backbone(), _task(n_way=4))


def _fake_domain(name: str) -> ImageSet:
    labels = np.repeat(np.arange(5), 20)
    images = (labels[:, None, None] * 50 + np.zeros((1, 10, 10))).astype(np.uint8)
    return ImageSet(name, images, labels.astype(np.int64), tuple(f"c{i}" for i in range(5)))


TINY_BENCH = {
    "architecture": "tiny",
    "image_size": 16,
    "n_way": 3,
    "k_shot": 2,
    "test_per_task": 3,
    "train_tasks_per_domain": 2,
    "dev_tasks_per_domain": 1,
    "test_tasks_per_domain": 2,
    "domains": ["digits", "mnist"],
    "held_out": "mnist",
    "peft": TINY_PEFT,
}


def test_shipped_config_validates():
    from liftpeft.bench.runner import load_bench_config

    config = load_bench_config("vision-xdomain")
    assert config["settings"]["meta_split"] == "leave-one-domain-out"


def test_bench_runs_on_a_tiny_network(tmp_path, monkeypatch):
    from liftpeft.bench.benchmarks import build_benchmark
    from liftpeft.bench.runner import complete_bench_config, run_bench

    monkeypatch.setattr(vision_data, "load_domain", _fake_domain)
    data = build_benchmark("vision-xdomain", TINY_BENCH)
    assert data.info["n_train_tasks"] == 2 and data.info["n_test_tasks"] == 2
    assert {t.task.domain for t in data.test} == {"mnist"}
    config = complete_bench_config(
        {
            "benchmark": "vision-xdomain",
            "settings": TINY_BENCH,
            "methods": {"no-meta": {"adapt_steps": 2, "adapt_batch_size": 6}},
            "variants": {"zero-shot": {"method": "no-meta", "adapt_steps": 0}},
            "default_methods": ["no-meta", "zero-shot"],
            "reference": "no-meta",
        }
    )
    results = run_bench(config, None, [0], tmp_path / "out", split="dev", data=data)
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert {r["method"] for r in rows} == {"no-meta", "zero-shot"}
    assert all(r["metrics"]["chance_accuracy"] == pytest.approx(1 / 3) for r in rows)
    with pytest.raises(ValueError, match="architecture"):
        build_benchmark("vision-xdomain", {**TINY_BENCH, "architecture": "vit"})


@pytest.mark.parametrize("combination_type", ["linear", "ties", "svd"])
def test_merges_on_the_image_backbone_are_peft_add_weighted_adapter(combination_type):
    """The LoRA on Conv2d layers merged through liftpeft is the network peft's own merge builds."""
    import copy

    import torch.nn.functional as F
    from peft import LoraConfig
    from peft.tuners.lora import LoraModel

    torch.manual_seed(0)
    raw = load_lite0(None, tiny=True)
    bb = VisionBackbone(copy.deepcopy(raw), TINY_PEFT, n_way=3, image_size=16)
    thetas = bb.theta0 + 0.3 * torch.randn(3, bb.dim, generator=torch.Generator().manual_seed(1))
    obj = VisionTaskObjective(bb, _task())
    merged = obj.merge_adapters(thetas, [0.5, 0.3, 0.2], combination_type, density=0.5, seed=7)
    assert list(bb.model.peft_config) == ["default"]  # the zoo's adapters are gone again
    # peft alone: a fresh tuner holding the three adapters, merged by add_weighted_adapter
    ref = LoraModel(copy.deepcopy(raw), LoraConfig(**TINY_PEFT), "a0")
    for i in (1, 2):
        ref.peft_config[f"a{i}"] = LoraConfig(**TINY_PEFT)
        ref.inject_adapter(ref.model, f"a{i}")
    params = dict(ref.model.named_parameters())
    with torch.no_grad():
        for i, theta in enumerate(thetas):
            for name, value in bb.spec.unflatten(theta).items():
                if "lora_" in name:
                    params[name.replace(".default", f".a{i}")].copy_(value)
    torch.manual_seed(7)
    ref.add_weighted_adapter(
        ["a0", "a1", "a2"], [0.5, 0.3, 0.2], "m", combination_type=combination_type, density=0.5
    )
    ref.set_adapter("m")
    inputs = bb.inputs(_task().split("test")[0])
    with torch.no_grad():
        want = F.normalize(ref.model.eval()(inputs, start=bb.split).float(), dim=-1)
        got = bb.features(merged, inputs)
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, bb.features(thetas[0], inputs), atol=1e-3)
    # the head sits outside the LoRA layers: the weighted mean of the adapters' heads
    heads = torch.stack([bb.spec.unflatten(t)["head.weight"] for t in thetas])
    expected = (torch.tensor([0.5, 0.3, 0.2])[:, None, None] * heads).sum(0)
    assert torch.allclose(bb.spec.unflatten(merged)["head.weight"], expected, atol=1e-6)


def test_arrow_refuses_the_image_backbone_in_one_sentence():
    obj = VisionTaskObjective(_backbone(), _task())
    with pytest.raises(ValueError, match="Conv2d"):
        obj.arrow_objective(torch.zeros(2, obj.backbone.dim), top_k=1, router_temperature=1.0, seed=0)
