"""``torchrun --nproc-per-node 2 -m liftpeft meta-train``: one artefact, written by rank 0."""

import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from liftpeft.data.synthetic import write_rule_family
from liftpeft.example import write_example
from liftpeft.learned_prior import LearnedPrior
from liftpeft.peft_integration.tiny import make_tiny_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("torchrun")
    make_tiny_model("bert", root / "model")
    write_rule_family(root / "tasks", n_tasks=4, n_test_tasks=1)
    return root


def _readme_torchrun_line() -> list[str]:
    lines = [ln for ln in (ROOT / "README.md").read_text().splitlines() if " torchrun " in f" {ln} "]
    assert len(lines) == 1, "the README shows one torchrun command"
    words = shlex.split(lines[0])
    assert words[:2] == ["OMP_NUM_THREADS=1", "torchrun"] and words[2:4] == ["--nproc-per-node", "2"]
    return words[4:]


def test_the_readme_torchrun_command_runs_as_written(tmp_path):
    write_example(tmp_path / "example")
    args = _readme_torchrun_line()
    assert args[:2] == ["-m", "liftpeft"]
    done = _torchrun(tmp_path, *args[2:])
    assert done.returncode == 0, done.stderr[-3000:]
    out = args[args.index("--out") + 1]
    assert LearnedPrior.load(tmp_path / out).n_components == 2


def _torchrun(root, *args: str) -> subprocess.CompletedProcess:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "LIFTPEFT_QUIET": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(port), "-m", "liftpeft", *args]  # fmt: skip
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_meta_train_under_torchrun_writes_one_prior_and_resumes_it(workspace):
    args = ["meta-train", "--model", "model", "--tasks", "tasks/train", "--out", "prior", "--k", "1",
            "--steps", "12", "--set", "warmup_steps=4", "--set", "burnin_steps=2", "--set", "task_bank=file",
            "--set", "checkpoint_every=4", "--set", "sigma=1", "--set", "beta=1"]  # fmt: skip
    done = _torchrun(workspace, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("meta-trained") == 1  # rank 0 reports, rank 1 stays quiet
    prior = LearnedPrior.load(workspace / "prior")
    assert prior.dim > 0 and prior.config["task_bank"] == "file"
    ranks = sorted(p.name for p in (workspace / "prior" / "run" / "shards").iterdir())
    assert ranks == ["rank-0", "rank-1"]
    metrics = [
        json.loads(ln) for ln in (workspace / "prior" / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert metrics and all(m["ranks"] == 2 for m in metrics)
    again = _torchrun(workspace, *args, "--resume")  # complete: loaded, not retrained
    assert again.returncode == 0, again.stderr[-3000:]


def test_a_method_that_cannot_shard_is_refused_under_torchrun(workspace):
    done = _torchrun(
        workspace,
        "meta-train",
        "--method",
        "maml",
        "--model",
        "model",
        "--tasks",
        "tasks/train",
        "--out",
        "maml",
    )
    assert done.returncode != 0
    assert "does not run on several ranks" in done.stderr and "launch it without torchrun" in done.stderr
    assert not (workspace / "maml").exists()


def test_one_process_with_a_file_bank_takes_the_sharded_path(workspace, one_thread):
    from liftpeft import api

    api.meta_train(
        workspace / "model", workspace / "tasks" / "train", workspace / "one-rank", steps=12, k=1,
        warmup_steps=4, burnin_steps=2, sigma=1.0, beta=1.0, task_bank="file", quiet=True,
    )  # fmt: skip
    bank = workspace / "one-rank" / "run" / "shards" / "rank-0" / "bank"
    assert sorted(p.name for p in bank.iterdir()) == [
        "delta_m.npy",
        "delta_v.npy",
        "theta.npy",
        "theta_sq.npy",
    ]
    assert LearnedPrior.load(workspace / "one-rank").config["task_bank"] == "file"
