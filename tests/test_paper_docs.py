"""The copy-paste examples of docs/datasets.md and docs/paper-benchmarks.md run as written.

Every ```python block runs (in order, in one temporary folder) and every ```bash block's `liftpeft`
lines run through the CLI. A block right after `<!-- not run: needs the hub -->` is skipped; only
hub examples may be marked so. For the paper benchmarks the tests write fixtures in the data layouts
the page describes (all 65 CLS-45 task folders, all 19 VTAB-1K datasets) and append flags that swap
the hub model for a tiny local one of the same architecture and shrink the run (shown below).
"""

import json
import re
import shlex
from pathlib import Path

import pytest

from liftpeft.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
SKIP = "<!-- not run: needs the hub -->"


def _blocks(page: str) -> list[tuple[str, str]]:
    text = (ROOT / "docs" / page).read_text()
    out = []
    for match in re.finditer(r"(<!-- not run: needs the hub -->\n)?```(python|bash)\n(.*?)\n```", text, re.S):
        if match.group(1):
            assert "--subset" in match.group(3) or "/" in match.group(3), "only hub examples may be skipped"
            continue
        out.append((match.group(2), match.group(3)))
    assert out, f"docs/{page} has no runnable example"
    return out


def _commands(block: str) -> list[list[str]]:
    lines = [shlex.split(ln, comments=True) for ln in block.splitlines()]
    for words in lines:
        assert not words or words[0] == "liftpeft", f"docs examples run only liftpeft commands: {words}"
    return [words[1:] for words in lines if words]


def _run_page(page: str, extra=lambda argv: []) -> list[list[str]]:
    ran = []
    for language, code in _blocks(page):
        if language == "python":
            exec(compile(code, f"docs/{page}", "exec"), {"__name__": "__docs__"})
            continue
        for argv in _commands(code):
            assert main([*argv, *extra(argv)]) == 0, f"liftpeft {' '.join(argv)} failed"
            ran.append(argv)
    return ran


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_datasets_page_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("datasets")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    ran = _run_page("datasets.md")
    printed = capsys.readouterr().out
    assert "[('lamp', 2, 1, 1), ('phone', 2, 1, 1)]" in printed
    assert len(ran) == 2
    from liftpeft.tasks import read_task_collection

    cli = read_task_collection(tmp_path / "review-tasks-cli")
    assert [(t.name, len(t.train), len(t.dev), len(t.test)) for t in cli] == [
        ("lamp", 2, 1, 1),
        ("phone", 2, 1, 1),
    ]
    assert cli[0].train[0].options == ("negative", "positive")
    (one,) = read_task_collection(tmp_path / "one-task")
    assert one.name == "all-reviews" and len(one.train) == 3


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_paper_benchmarks_page_runs(tmp_path, monkeypatch, capsys, one_thread):
    pytest.importorskip("PIL")
    from liftpeft.data.crossfit import read_split
    from liftpeft.data.vtab import CLASSES
    from liftpeft.peft_integration.tiny import make_tiny_model
    from tests.paper_fixtures import write_crossfit, write_vtab

    monkeypatch.chdir(tmp_path)
    cls45 = read_split("cls45")
    write_crossfit(
        tmp_path / "crossfit" / "data", n=2, seeds=(100,), tasks=[t for ts in cls45.values() for t in ts]
    )
    write_vtab(tmp_path / "vtab-1k", n_train=3, n_val=2, n_test=2, datasets=list(CLASSES))
    models = {"crossfit-bart": "bart", "crossfit-flan-t5": "t5", "vtab-1k": "vit"}
    paths = {b: str(make_tiny_model(kind, tmp_path / "models" / kind)) for b, kind in models.items()}

    def tiny(argv: list[str]) -> list[str]:
        """The hub model -> a tiny local one; one method, one seed, two tasks each way, few steps."""
        benchmark = argv[argv.index("--benchmark") + 1]
        small = ["--set", "device=cpu", "--set", "max_train_tasks=2", "--set", "max_test_tasks=1"]
        small += ["--set", f"model={paths[benchmark]}", "--methods", "zero-shot", "--seeds", "1"]
        if benchmark == "vtab-1k":
            small += ["--set", "image_size=24", "--set", "eval_batch_size=8"]
        else:
            small += ["--set", "max_length=64"]
        return small

    ran = _run_page("paper-benchmarks.md", tiny)
    printed = capsys.readouterr().out
    assert "{'train': 45, 'dev': 10, 'test': 10}" in printed
    assert (
        "'test': ['caltech101', 'cifar', 'dtd', 'oxford_flowers102', 'oxford_iiit_pet', 'svhn', 'sun397']"
        in printed
    )
    assert [argv[argv.index("--benchmark") + 1] for argv in ran] == list(models)
    for argv in ran:
        rows = (tmp_path / argv[argv.index("--out") + 1] / "results.jsonl").read_text().splitlines()
        assert len(rows) == 1 and json.loads(rows[0])["method"] == "zero-shot"
