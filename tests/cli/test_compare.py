"""``liftpeft compare``: the bench harness on a user's own task folders."""

import json

import pytest
import yaml

from liftpeft.bench.benchmarks import meta_split
from liftpeft.cli.main import main
from liftpeft.data.synthetic import write_rule_family
from liftpeft.evaluation.stats import read_rows
from liftpeft.peft_integration.tiny import make_tiny_model
from liftpeft.tasks import read_task_collection

METHODS = {
    "no-meta": dict(adapt_steps=2, adapt_batch_size=4),
    "union": dict(meta_steps=3, meta_batch_size=4, adapt_steps=2, adapt_batch_size=4),
}


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    make_tiny_model("bert", root / "model")
    write_rule_family(root / "tasks", n_tasks=5, n_test_tasks=2)
    (root / "methods.yaml").write_text(yaml.safe_dump({"methods": METHODS, "settings": {"max_length": 24}}))
    return root


def _compare(w, out, *extra):
    return main(
        [
            "compare",
            "--model",
            str(w / "model"),
            "--tasks",
            str(w / "tasks" / "train"),
            "--config",
            str(w / "methods.yaml"),
            "--methods",
            "no-meta,union",
            "--seeds",
            "1",
            "--out",
            str(out),
            "--quiet",
            *extra,
        ]
    )


def test_compare_with_test_tasks_runs_the_grid_and_reports(w, tmp_path):
    out = tmp_path / "cmp"
    assert _compare(w, out, "--test-tasks", str(w / "tasks" / "test")) == 0
    rows = read_rows(out)
    test_names = {t.name for t in read_task_collection(w / "tasks" / "test")}
    assert {r["task"] for r in rows} == test_names and {r["method"] for r in rows} == {"no-meta", "union"}
    assert json.loads((out / "run.json").read_text())["benchmark"] == "tasks"
    assert "| union |" in (out / "report.md").read_text() or "union" in (out / "report.md").read_text()
    before = (out / "results.jsonl").read_text()
    assert _compare(w, out, "--test-tasks", str(w / "tasks" / "test")) == 0  # a rerun resumes: no new rows
    assert (out / "results.jsonl").read_text() == before


def test_compare_holds_out_tasks_by_a_fixed_rule(w, tmp_path):
    out = tmp_path / "cmp"
    assert _compare(w, out, "--set", "test_fraction=0.4") == 0
    tasks = read_task_collection(w / "tasks" / "train")
    test, _, train = meta_split(tasks, 0.4, 0.0)
    assert (
        {r["task"] for r in read_rows(out)} == {t.name for t in test} and len(test) == 2 and len(train) == 3
    )


def test_the_split_depends_only_on_task_names(w):
    tasks = read_task_collection(w / "tasks" / "train")
    test, _, _ = meta_split(tasks, 0.2, 0.0)
    more = tasks + read_task_collection(w / "tasks" / "test")
    test_more, _, train_more = meta_split(more, 0.2, 0.0)
    # a held-out task stays held out or moves to train only because the count grew, never the reverse
    assert {t.name for t in test} - {t.name for t in test_more} <= {t.name for t in train_more}
    assert meta_split(list(reversed(tasks)), 0.2, 0.0)[0] == test


def test_compare_refuses_too_few_tasks(w, tmp_path, capsys):
    one = tmp_path / "one"
    one.mkdir()
    (one / "a").symlink_to(sorted((w / "tasks" / "train").iterdir())[0])
    argv = [
        "compare",
        "--model",
        str(w / "model"),
        "--tasks",
        str(one),
        "--out",
        str(tmp_path / "o"),
        "--quiet",
    ]
    assert main(argv) == 1
    assert "cannot be split into meta-train and meta-test tasks" in capsys.readouterr().err
