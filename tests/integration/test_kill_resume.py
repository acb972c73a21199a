"""Every registered method: meta-train, ``kill -9`` mid-run, resume -> the same final state, bit for bit.

Through the CLI (``meta-train --method M`` then ``--resume``) and through ``bench`` (the same
command rerun). The killed run is a real subprocess that SIGKILLs itself (``fixtures/kill_child.py``)
in the middle of meta-training -- after a checkpoint for the methods that resume mid-run -- or, for
methods without a meta-training loop, just before its artefact's last file is published. The
uninterrupted reference and the resume run in this process with the same thread count.
"""

import dataclasses
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import yaml

from liftpeft import service
from liftpeft.cli.main import main
from liftpeft.data.synthetic import write_rule_family
from liftpeft.learned_prior import LearnedPrior
from liftpeft.methods import available_methods
from liftpeft.methods.state_io import _encode
from liftpeft.peft_integration.tiny import make_tiny_model
from tests.methods.test_end_to_end import TINY

CHILD = Path(__file__).resolve().parents[1] / "fixtures" / "kill_child.py"
METHODS = sorted(available_methods())
KILL_AT = 3  # progress events before the kill: past the first checkpoint (every 1 step)


def _settings(name):
    return {k: v for k, v in TINY[name].items() if not callable(v)}


def flat(state):
    """(JSON tree without timestamps, {key: tensor}) of any method state."""
    tensors = {}
    tree = _encode(state, tensors, "state")

    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in ("created", "version")}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    if isinstance(state, LearnedPrior):
        for k, sibling in state.siblings.items():
            _, sub = flat(sibling)
            tensors.update({f"k{k}.{n}": t for n, t in sub.items()})
    return strip(tree), tensors


def assert_bit_identical(a, b, what):
    tree_a, tensors_a = flat(a)
    tree_b, tensors_b = flat(b)
    assert tree_a == tree_b, f"{what}: the resumed state's structure or scalars differ"
    assert sorted(tensors_a) == sorted(tensors_b)
    for key in tensors_a:
        assert torch.equal(tensors_a[key], tensors_b[key]), f"{what}: tensor {key} differs after resume"


def _kill(argv, cwd, env):
    """Run the child in progress mode; if it finished first (no loop to interrupt), in publish mode."""
    base = [sys.executable, str(CHILD)]
    for mode in (["progress", str(KILL_AT)], ["publish"]):
        done = subprocess.run([*base, *mode, *argv], cwd=cwd, env=env, capture_output=True, text=True)
        if done.returncode == -9:
            return mode[0]
        assert done.returncode == 0, done.stderr[-2000:]
        for entry in Path(cwd).iterdir():  # finished: start over for the next mode
            if entry.name.startswith("out"):
                import shutil

                shutil.rmtree(entry)
    raise AssertionError(f"the child was never killed: {argv}")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    make_tiny_model("bert", root / "model")
    write_rule_family(root / "tasks", n_tasks=3, n_test_tasks=1)
    return root


@pytest.fixture(scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _env(root):
    env = dict(os.environ, HF_HUB_OFFLINE="1", LIFTPEFT_QUIET="1", LIFTPEFT_CACHE=str(root / "cache"))
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    return env


@pytest.fixture(scope="module")
def killed_cli_runs(workspace):
    """Every method's killed CLI run, in parallel subprocesses (the slow part of this module)."""

    def one(name):
        folder = workspace / "cli" / name
        folder.mkdir(parents=True)
        (folder / "settings.yaml").write_text(yaml.safe_dump(_settings(name)))
        argv = _cli_argv(workspace, name, folder, "out")
        return name, (folder, _kill(argv, folder, _env(workspace)))

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(one, METHODS))


def _cli_argv(root, name, folder, out):
    return [
        "meta-train",
        "--method",
        name,
        "--config",
        str(folder / "settings.yaml"),
        "--model",
        str(root / "model"),
        "--tasks",
        str(root / "tasks" / "train"),
        "--out",
        str(folder / out),
        "--checkpoint-every",
        "1",
        "--threads",
        "1",
        "--quiet",
    ]


@pytest.mark.parametrize("name", METHODS)
def test_cli_meta_train_killed_and_resumed_is_bit_identical(name, workspace, killed_cli_runs, one_thread):
    folder, mode = killed_cli_runs[name]
    if available_methods()[name].resumable_mid_run and mode == "progress":
        assert any((folder / "out" / "run").rglob("state.json")), "no checkpoint was written before the kill"
    assert main([*_cli_argv(workspace, name, folder, "out"), "--resume"]) == 0
    assert main(_cli_argv(workspace, name, folder, "reference")) == 0
    resumed, reference = service.load(folder / "out"), service.load(folder / "reference")
    assert resumed.method == name and resumed.settings == reference.settings
    assert_bit_identical(reference.state, resumed.state, f"{name} (killed at {mode})")


BENCH_SETTINGS = {"n_train_tasks": 3, "n_dev_tasks": 1, "n_test_tasks": 1, "max_length": 24}


@pytest.fixture(scope="module")
def killed_bench_runs(workspace):
    def one(name):
        folder = workspace / "bench" / name
        folder.mkdir(parents=True)
        config = {"benchmark": "rule-family", "settings": BENCH_SETTINGS, "methods": {name: _settings(name)}}
        (folder / "bench.yaml").write_text(yaml.safe_dump(config))
        return name, (folder, _kill(_bench_argv(name, folder, "out"), folder, _env(workspace)))

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(one, METHODS))


def _bench_argv(name, folder, out):
    return [
        "bench",
        "--config",
        str(folder / "bench.yaml"),
        "--methods",
        name,
        "--seeds",
        "1",
        "--out",
        str(folder / out),
        "--threads",
        "1",
        "--quiet",
    ]


@pytest.mark.parametrize("name", METHODS)
def test_bench_killed_and_rerun_is_bit_identical(name, workspace, killed_bench_runs, one_thread, monkeypatch):
    folder, mode = killed_bench_runs[name]
    monkeypatch.setenv("LIFTPEFT_CACHE", str(workspace / "cache"))
    assert main(_bench_argv(name, folder, "out")) == 0
    assert main(_bench_argv(name, folder, "reference")) == 0
    (resumed,) = (folder / "out" / "states").iterdir()
    (reference,) = (folder / "reference" / "states").iterdir()
    assert resumed.name == reference.name
    a, b = service.load(reference), service.load(resumed)
    assert_bit_identical(a.state, b.state, f"bench {name} (killed at {mode})")
    assert dataclasses.asdict(a) is not None
