"""Scale-out (SPEC section 12): W gloo ranks take the chain of one process; a killed rank resumes.

Each distributed check launches real processes (``tests/fixtures/sharded_run.py``) that rendezvous
over TCP on this machine, as torchrun's ranks do.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from liftpeft.scale.sampler import random_schedule

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
sys.path.insert(0, str(FIXTURES))
import sharded_run  # noqa: E402

from liftpeft.methods.lift import ShardedLiftTrainer  # noqa: E402
from liftpeft.methods.lift.trainer import MetaTrainingError  # noqa: E402

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp: Path, mode: str, name: str, *flags_by_rank: list[str]) -> list[subprocess.Popen]:
    port = _free_port()
    procs = []
    for rank in range(WORLD):
        env = {
            **os.environ,
            "RANK": str(rank),
            "WORLD_SIZE": str(WORLD),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
            "LIFTPEFT_QUIET": "1",
        }
        flags = flags_by_rank[rank] if flags_by_rank else []
        cmd = [sys.executable, str(FIXTURES / "sharded_run.py"), str(tmp / f"{name}.safetensors"),
               str(tmp / f"work-{name}"), mode, *flags]  # fmt: skip
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    return procs


def _wait(procs: list[subprocess.Popen], timeout: float = 180) -> list[int]:
    codes = []
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        codes.append(p.returncode)
    return codes


def _run(tmp: Path, mode: str, name: str) -> dict[str, torch.Tensor]:
    procs = _launch(tmp, mode, name)
    codes = _wait(procs)
    logs = [p.stdout.read().decode()[-2000:] for p in procs]
    assert codes == [0] * WORLD, logs
    return load_file(str(tmp / f"{name}.safetensors"))


def _one_process(tmp: Path, mode: str) -> dict[str, torch.Tensor]:
    problem, config = sharded_run.problem(), sharded_run.config(mode)
    n = len(problem.train)
    schedule = lambda step: random_schedule(3, n, WORLD, config.tasks_per_step, step)  # noqa: E731
    trainer = ShardedLiftTrainer(problem, config, seed=3, workdir=tmp / f"one-{mode}", schedule=schedule)
    return sharded_run.prior_tensors(trainer.run())


@pytest.fixture(scope="module")
def two_ranks_paper(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("paper")
    return tmp, _run(tmp, "paper", "full")


@pytest.mark.parametrize("mode", ["paper", "structured"])
def test_two_gloo_ranks_give_the_prior_of_one_process_with_their_schedule(
    mode, two_ranks_paper, tmp_path, one_thread
):
    """Bit-identical: with two ranks the all-reduce adds the same two float64 terms one process adds."""
    distributed = two_ranks_paper[1] if mode == "paper" else _run(tmp_path, mode, "full")
    alone = _one_process(tmp_path, mode)
    assert distributed.keys() == alone.keys()
    for name in alone:
        assert torch.equal(distributed[name], alone[name]), name
    # and the chain moved: the prior is not its starting point
    assert float(distributed["means"].abs().max()) > 0.1


def test_all_reducing_every_few_steps_gives_the_one_process_prior_up_to_float64_order(tmp_path, one_thread):
    """``sync_every=4``: a rank sums 4 steps of its changes before the all-reduce, one process sums
    them in visiting order, so the statistics differ in the last float64 bits (the adapters and the
    prior are float32: equal to 1e-6 after 60 steps)."""
    distributed = _run(tmp_path, "paper-sync4", "sync4")
    alone = _one_process(tmp_path, "paper-sync4")
    for name in alone:
        assert torch.allclose(distributed[name], alone[name], rtol=1e-6, atol=1e-6), name


def test_a_rank_killed_mid_run_resumes_to_the_uninterrupted_prior(two_ranks_paper, tmp_path):
    """Rank 1 dies by SIGKILL at step 37 (checkpoints every 10 steps, file bank); rank 0 is then
    killed as torchrun's agent would; ``--resume`` on both ranks ends at the uninterrupted prior."""
    procs = _launch(tmp_path, "paper", "killed", [], ["--kill-at", "37"])
    assert procs[1].wait(timeout=180) == -9
    procs[0].kill()
    _wait(procs)
    saved = sorted(p.name for p in (tmp_path / "work-killed" / "shards" / "rank-1").iterdir())
    assert "ckpt-000000030" in saved and "ckpt-000000040" not in saved
    procs = _launch(tmp_path, "paper", "killed", ["--resume"], ["--resume"])
    codes = _wait(procs)
    logs = [p.stdout.read().decode() for p in procs]
    assert codes == [0, 0], [log[-2000:] for log in logs]
    assert all(f"rank {r} resumed from step 30" in logs[r] for r in range(WORLD)), logs
    resumed = load_file(str(tmp_path / "killed.safetensors"))
    full = two_ranks_paper[1]
    for name in full:
        assert torch.equal(resumed[name], full[name]), name


def test_ranks_started_with_other_settings_are_refused(tmp_path):
    procs = _launch(tmp_path, "paper", "mismatch", [], ["--beta", "0.7"])
    codes = _wait(procs)
    logs = [p.stdout.read().decode() for p in procs]
    assert all(code != 0 for code in codes)
    assert all("the ranks of this run were given different tasks and settings" in log for log in logs)
    assert not (tmp_path / "mismatch.safetensors").exists()


def test_a_sharded_run_refuses_settings_it_does_not_implement():
    config = sharded_run.config("structured")
    config.cluster_init = "offsets"
    with pytest.raises(MetaTrainingError, match="leave cluster_init unset or random"):
        ShardedLiftTrainer(sharded_run.problem(), config, seed=0)
    config = sharded_run.config("paper-sync4")
    config.gain_cap = True
    with pytest.raises(MetaTrainingError, match="gain_cap is not implemented in a sharded run"):
        ShardedLiftTrainer(sharded_run.problem(), config, seed=0)
