"""docs/hub.md and docs/trainer.md run as written: every ```python block (in one namespace, in page
order) and every `liftpeft` command of a ```bash block, on a tiny GPT-2 prior, offline."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from liftpeft.cli.main import main
from tests.hub.conftest import FakeHub

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(python|bash)\n(.*?)^```", re.S | re.M)


def blocks(page: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer((ROOT / "docs" / page).read_text())]


def run_page(page: str) -> dict:
    namespace: dict = {"__name__": f"docs_{page.replace('.', '_')}"}
    for kind, code in blocks(page):
        if kind == "python":
            exec(compile(code, f"docs/{page}", "exec"), namespace)
            continue
        for line in code.splitlines():
            argv = shlex.split(line)
            assert argv and argv[0] == "liftpeft", f"docs/{page}: {line!r} is not a liftpeft command"
            assert main(argv[1:]) == 0, f"docs/{page}: `{line}` failed"
    return namespace


@pytest.fixture
def workspace(tmp_path, monkeypatch, gpt2_prior, rule_tasks):
    import huggingface_hub.constants

    cache = tmp_path / "hub-cache"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    gpt2_prior.save(work / "prior")
    shutil.copytree(sorted((rule_tasks / "test").iterdir())[0], work / "my-task")
    return work, FakeHub(cache).install(monkeypatch)


def test_the_pages_have_examples():
    hub_kinds = [kind for kind, _ in blocks("hub.md")]
    assert hub_kinds.count("python") >= 3 and "bash" in hub_kinds
    assert [kind for kind, _ in blocks("trainer.md")].count("python") >= 4


def test_hub_page_runs(workspace, one_thread):
    work, fake = workspace
    ns = run_page("hub.md")
    assert (work / "prior-for-the-hub" / "README.md").is_file()
    assert (work / "adapter" / "adapter_model.safetensors").is_file()
    pushed = [c[1]["repo_id"] for c in fake.calls if c[0] == "create_commit"]
    assert pushed == ["acme/lift-prior", "acme/lift-prior-copy", "acme/my-task-adapter"]
    adapter_files = sorted(op.path_in_repo for op in fake.operations)  # the last commit: the adapter
    assert adapter_files == ["README.md", "adapter_config.json", "adapter_model.safetensors", "liftpeft.json"]
    from peft import PeftModel

    assert isinstance(ns["model"], PeftModel)  # the pushed adapter, loaded back by its repo id


def test_trainer_page_runs(workspace, one_thread):
    pytest.importorskip("trl")
    work, _ = workspace
    ns = run_page("trainer.md")
    assert (work / "my-adapter" / "adapter_config.json").is_file()
    assert any("prior_nll" in r for r in ns["trainer"].state.log_history)
    assert type(ns["sampler"].optimizer.optimizer).__name__ == "LangevinSGD"
