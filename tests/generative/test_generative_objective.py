"""Text-to-text objectives on a tiny random Llama: exact match, greedy generation, the registered benchmark."""

from __future__ import annotations

import json
import tarfile

import pytest
import torch

from liftpeft.tasks.schema import PairExample, Task

ATOL = 1e-5
PEFT = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], "layers_to_transform": [2, 3]}


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    from liftpeft.peft_integration.tiny import make_tiny_model

    return make_tiny_model("llama", tmp_path_factory.mktemp("llama") / "llama", layers=4)


def _task() -> Task:
    pairs = [PairExample(f"in {i} ->", f" out{i % 3}") for i in range(6)]
    return Task("toy", "text2text", train=pairs[:4], test=pairs[4:])


def test_cached_and_uncached_objectives_agree_and_report_exact_match(tiny_llama):
    from liftpeft.peft_integration import PeftBackbone, PeftTaskObjective

    cached = PeftTaskObjective(PeftBackbone(tiny_llama, PEFT, prefix_cache=True), _task())
    plain = PeftTaskObjective(PeftBackbone(tiny_llama, PEFT), _task())
    theta = cached.backbone.theta0 + 0.1 * torch.randn(
        cached.backbone.dim, generator=torch.Generator().manual_seed(0)
    )
    assert torch.allclose(cached.loss(theta), plain.loss(theta), atol=ATOL)
    got, want = cached.evaluate(theta, "test"), plain.evaluate(theta, "test")
    assert set(got) >= {"exact_match", "token_accuracy", "loss"}
    assert got["exact_match"] == want["exact_match"] and got["token_accuracy"] == want["token_accuracy"]
    assert got["loss"] == pytest.approx(want["loss"], abs=ATOL)


def test_exact_match_is_greedy_decoding_reproducing_the_target(tiny_llama):
    """Teacher-forced exact match of a target equals greedy decoding producing it and stopping."""
    from liftpeft.peft_integration import PeftBackbone, PeftTaskObjective

    backbone = PeftBackbone(tiny_llama, PEFT)
    theta = backbone.theta0 + 0.1 * torch.randn(backbone.dim, generator=torch.Generator().manual_seed(1))
    probe = PeftTaskObjective(backbone, _task())
    generated = probe.generate(theta, "test", max_new_tokens=5)
    # targets made of the greedy output itself: every target token is then the argmax
    own = [PairExample(ex.input, text) for ex, text in zip(_task().test, generated)]
    objective = PeftTaskObjective(backbone, Task("own", "text2text", train=own, test=own))
    metrics = objective.evaluate(theta, "test")
    again = objective.generate(theta, "test", max_new_tokens=6)
    ends = [g == t for g, t in zip(again, generated)]  # stopped with EOS right after the target
    n_target = [len(backbone.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in generated]
    assert metrics["exact_match"] == pytest.approx(sum(ends) / len(ends))
    # all target tokens are right; only the end-of-sequence token may be missed
    want = sum(n_target) / (sum(n_target) + len(n_target))
    assert metrics["token_accuracy"] >= want - 1e-9


def test_the_registered_benchmark_builds_on_a_hand_written_pool(tiny_llama, tmp_path, monkeypatch):
    from liftpeft.bench.benchmarks import build_benchmark

    monkeypatch.setenv("LIFTPEFT_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "src" / "bigbench" / "benchmark_tasks"
    for i in range(6):
        examples = [{"input": f"[{j}, {i}]", "target": [f"[{j}]"]} for j in range(32)]
        (root / "list_functions" / f"c{i:03d}").mkdir(parents=True)
        (root / "list_functions" / f"c{i:03d}" / "task.json").write_text(json.dumps({"examples": examples}))
    (tmp_path / "cache" / "packages").mkdir(parents=True)
    with tarfile.open(tmp_path / "cache" / "packages" / "bigbench-1.0.0.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "bigbench", arcname="bigbench-1.0.0/bigbench")
    data = {"families": ["list_functions"], "held_out_families": [], "prompt_template": "{input} ="}
    bench = build_benchmark(
        "bigbench-gen",
        {"model": str(tiny_llama), "data": data, "peft": PEFT, "prefix_cache": True, "max_length": 32},
    )
    assert bench.info["prefix_cache_split"] == 2
    info = bench.info
    assert info["n_train_tasks"] + info["n_dev_tasks"] + info["n_test_tasks"] == 6 and bench.test
    metrics = bench.test[0].evaluate(bench.problem.theta0, "test")
    assert 0.0 <= metrics["exact_match"] <= 1.0 and metrics["n"] == 16


def test_target_only_loss_equals_the_loss_from_full_logits(tiny_llama):
    """The LM head runs only at target positions; the loss is the per-example mean target NLL."""
    import torch.nn.functional as F

    from liftpeft.peft_integration import PeftBackbone, PeftTaskObjective
    from liftpeft.peft_integration.encode import IGNORE

    for cache in (True, False):
        objective = PeftTaskObjective(PeftBackbone(tiny_llama, PEFT, prefix_cache=cache), _task())
        theta = objective.backbone.theta0 + 0.1 * torch.randn(
            objective.backbone.dim, generator=torch.Generator().manual_seed(2)
        )
        batch = objective.encoded("train").batch(torch.arange(4))
        logits = objective.backbone.forward(
            theta, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], _bypass_cache=True
        ).logits
        labels = batch["labels"][:, 1:]
        nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")
        mask = labels != IGNORE
        want = ((nll * mask).sum(1) / mask.sum(1)).mean()
        assert torch.allclose(objective.loss(theta, torch.arange(4)), want, atol=ATOL)
