"""CrossFit: files in CrossFit's own layout, the CLS-45 split, and tiny BART / T5 with LoRA on them."""

import pytest
import torch

from liftpeft.bench import build_benchmark, load_bench_config
from liftpeft.bench.runner import validate_bench_config
from liftpeft.data.crossfit import CrossFitConfig, load_crossfit, read_crossfit_task, read_split, task_files
from liftpeft.objective import loss_and_grad
from liftpeft.tasks.jsonl import TaskFormatError
from tests.paper_fixtures import write_crossfit


@pytest.fixture(scope="module")
def crossfit_root(tmp_path_factory):
    return write_crossfit(tmp_path_factory.mktemp("crossfit") / "data")


@pytest.fixture(scope="module")
def seq2seq_models(tmp_path_factory):
    from liftpeft.peft_integration.tiny import make_tiny_model

    root = tmp_path_factory.mktemp("seq2seq")
    return {kind: make_tiny_model(kind, root / kind) for kind in ("bart", "t5")}


def test_shipped_cls45_split_is_crossfits_45_10_10():
    split = read_split("cls45")
    assert [len(split[s]) for s in ("train", "dev", "test")] == [45, 10, 10]
    assert len({t for ts in split.values() for t in ts}) == 65  # disjoint
    assert "glue-sst2" in split["train"] and "superglue-cb" in split["test"]


def test_a_task_reads_as_crossfit_reads_it(crossfit_root):
    config = CrossFitConfig(root=str(crossfit_root))
    with pytest.warns(UserWarning, match="1 line\\(s\\) without an output"):
        task = read_crossfit_task(crossfit_root, "emotion", config)
    assert task.kind == "text2text" and (len(task.train), len(task.dev), len(task.test)) == (12, 12, 13)
    assert task.train[0].input == " [emotion] anger sentence 0 of train seed 100"
    assert task.train[0].target == "anger"
    assert task.test[-1].target == "anger"  # several references: the first is the target
    other = read_crossfit_task(crossfit_root, "emotion", CrossFitConfig(root=str(crossfit_root), seed=13))
    assert other.train[0].input.endswith("seed 13")


def test_as_choice_scores_among_the_tasks_answers(crossfit_root):
    config = CrossFitConfig(root=str(crossfit_root), as_choice=True, task_prefix=False, max_test=5)
    with pytest.warns(UserWarning):
        task = read_crossfit_task(crossfit_root, "emotion", config)
    assert task.kind == "choice" and task.train[0].options == ("anger", "joy", "sadness")
    assert [e.label for e in task.train[:3]] == [0, 1, 2] and len(task.test) == 5


def test_missing_files_and_tasks_say_what_to_do(crossfit_root, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"_build_gym\.py"):
        task_files(crossfit_root, "glue-sst2", seed=42)
    with pytest.raises(FileNotFoundError, match="65 tasks of split 'cls45' are not in"):
        load_crossfit({"root": str(crossfit_root)})
    (crossfit_root / "trec" / "trec_32_100_train.tsv").write_text("x\ty\n")
    try:
        with pytest.raises(TaskFormatError, match="set k to one of them"):
            task_files(crossfit_root, "trec", seed=100)
        assert task_files(crossfit_root, "trec", seed=100, k=16)["train"].name == "trec_16_100_train.tsv"
    finally:
        (crossfit_root / "trec" / "trec_32_100_train.tsv").unlink()
    with pytest.raises(ValueError, match="needs settings root"):
        CrossFitConfig()


def test_split_file_gives_the_meta_split(crossfit_root):
    with pytest.warns(UserWarning):
        splits = load_crossfit({"root": str(crossfit_root), "split": str(crossfit_root / "split.json")})
    assert {s: [t.name for t in ts] for s, ts in splits.items()} == {
        "train": ["glue-sst2", "emotion", "trec"],
        "dev": ["ag_news"],
        "test": ["superglue-cb"],
    }


@pytest.mark.parametrize(
    ("kind", "benchmark", "targets"),
    [("bart", "crossfit-bart", ["q_proj", "v_proj"]), ("t5", "crossfit-flan-t5", ["q", "v"])],
)
@pytest.mark.filterwarnings("ignore:.*without an output")
def test_tiny_seq2seq_with_lora_trains_on_crossfit(
    crossfit_root, seq2seq_models, kind, benchmark, targets, one_thread
):
    shipped = load_bench_config(benchmark)
    validate_bench_config(shipped)
    assert shipped["settings"]["peft"]["target_modules"] == targets and shipped["settings"]["peft"]["r"] == 4
    settings = {
        **shipped["settings"],
        "model": str(seq2seq_models[kind]),
        "root": str(crossfit_root),
        "split": str(crossfit_root / "split.json"),
        "device": "cpu",
        "max_length": 64,
    }
    data = build_benchmark(benchmark, settings)
    assert data.info["backbone"]["family"] == "seq2seq"
    assert [o.name for o in data.problem.train] == ["emotion", "glue-sst2", "trec"]
    task = data.problem.train[0]
    theta0 = data.problem.theta0
    loss, grad = loss_and_grad(task, theta0, torch.arange(4))
    assert torch.isfinite(torch.tensor(loss)) and loss > 0 and grad.abs().sum() > 0
    # one gradient step on the LoRA adapter lowers that batch's loss: the adapter is wired in
    lowered, _ = loss_and_grad(task, theta0 - 0.5 * grad / grad.norm(), torch.arange(4))
    assert lowered < loss
    metrics = data.test[0].evaluate(theta0)
    assert {"token_accuracy", "exact_match", "loss"} <= set(metrics)
