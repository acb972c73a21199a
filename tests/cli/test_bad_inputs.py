"""Bad input gets one sentence that says what to do, exit 1, and no half-written artefact."""

import errno
import shutil
from types import SimpleNamespace

import pytest

from liftpeft.cli import commands
from liftpeft.cli.main import main
from liftpeft.data.synthetic import write_rule_family
from liftpeft.peft_integration.tiny import make_tiny_model
from tests.cli.conftest import TINY_META_TRAIN as TINY
from tests.outputs.test_claim import snapshot


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    make_tiny_model("bert", root / "model", seed=0)
    make_tiny_model("bert", root / "other-weights", seed=1)  # same architecture, other weights
    write_rule_family(root / "tasks", n_tasks=3, n_test_tasks=1)
    meta = ["meta-train", "--model", str(root / "model"), "--k", "1", "--steps", "12", *TINY]
    assert main([*meta, "--tasks", str(root / "tasks" / "train"), "--out", str(root / "prior")]) == 0
    return SimpleNamespace(root=root, meta=meta, task=str(root / "tasks" / "test" / "task-000"))


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_a_task_folder_without_train_jsonl_is_an_error_not_a_dropped_task(w, tmp_path, capsys):
    tasks = tmp_path / "tasks"
    shutil.copytree(w.root / "tasks" / "train", tasks)
    victim = sorted(tasks.iterdir())[0]
    (victim / "train.jsonl").rename(victim / "trian.jsonl")
    assert main([*w.meta, "--tasks", str(tasks), "--out", str(tmp_path / "prior")]) == 1
    err = _one_line_error(capsys)
    assert f"{victim} has no train.jsonl" in err and "add train.jsonl or move the folder out" in err
    assert not (tmp_path / "prior").exists()


def test_a_base_model_with_other_weights_is_refused(w, tmp_path, capsys):
    argv = ["adapt", "--prior", str(w.root / "prior"), "--task", w.task, "--out", str(tmp_path / "a")]
    assert main([*argv, "--model", str(w.root / "other-weights"), "--quiet"]) == 1
    err = _one_line_error(capsys)
    assert "same architecture but other weights" in err and "Use the base model it was made for" in err
    assert not (tmp_path / "a").exists()
    assert main([*argv, "--model", str(w.root / "model"), "--quiet"]) == 0  # the right one is accepted


def test_adapt_refuses_a_meta_training_setting_it_would_ignore(w, tmp_path, capsys):
    argv = ["adapt", "--prior", str(w.root / "prior"), "--task", w.task, "--out", str(tmp_path / "a")]
    assert main([*argv, "--set", "beta=0.1", "--quiet"]) == 1
    err = _one_line_error(capsys)
    assert "['beta'] are fixed by the meta-trained lift state" in err and "adapt_beta_scale" in err
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(
    ("command", "advice"),
    [
        ("bench", "rerun the same command to continue"),
        ("meta_train", "rerun the same command with --resume"),
        ("adapt", "nothing half-written"),
    ],
)
def test_ctrl_c_says_what_was_kept_and_how_to_go_on(monkeypatch, capsys, command, advice):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, command, interrupted)
    argv = {
        "bench": ["bench", "--benchmark", "rule-family", "--out", "r"],
        "meta_train": ["meta-train", "--model", "m", "--tasks", "t", "--out", "o"],
        "adapt": ["adapt", "--prior", "p", "--task", "t", "--out", "o"],
    }[command]
    assert main(argv) == 130
    err = _one_line_error(capsys)
    assert advice in err
    if command == "bench":
        assert "--resume" not in err  # bench has no --resume flag


def _disk_full(monkeypatch):
    def disk_full(tensors, filename, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(filename))

    for where in (
        "safetensors.torch.save_file",
        "peft.utils.save_and_load.safe_save_file",
        "peft.peft_model.safe_save_file",
    ):
        monkeypatch.setattr(where, disk_full, raising=False)


def test_an_os_error_names_the_users_path_not_a_temporary(w, tmp_path, monkeypatch, capsys):
    _disk_full(monkeypatch)
    argv = ["adapt", "--prior", str(w.root / "prior"), "--task", w.task, "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "fresh")]) == 1
    err = _one_line_error(capsys)
    assert err.endswith(f"{tmp_path / 'fresh'}: no space left on device; free some disk space and rerun")
    assert ".tmp" not in err and ".liftpeft-build-" not in err
    assert not (tmp_path / "fresh").exists()  # the folder the command created is gone again


def test_a_failed_overwrite_keeps_the_previous_artefact(w, tmp_path, monkeypatch, capsys):
    out = tmp_path / "adapter"
    argv = ["adapt", "--prior", str(w.root / "prior"), "--task", w.task, "--out", str(out), "--quiet"]
    assert main(argv) == 0
    (out / "NOTES.md").write_text("mine")
    before = snapshot(out)
    _disk_full(monkeypatch)
    assert main([*argv, "--overwrite", "--seed", "1"]) == 1
    assert "no space left on device" in _one_line_error(capsys)
    assert snapshot(out) == before  # the old adapter is whole, nothing of the new one is there


def test_describe_error_maps_temporaries_to_the_users_path():
    err = OSError(errno.ENOSPC, "No space left on device", "/data/run/.prior.json.k3j.tmp")
    assert (
        commands.describe_error(err) == "/data/run: no space left on device; free some disk space and rerun"
    )
    err = OSError(errno.EACCES, "Permission denied", "/data/out/.liftpeft-build-x1/adapter_config.json")
    assert commands.describe_error(err).startswith("/data/out: permission denied; check that you may write")


def test_bench_refuses_a_setting_typo_with_the_valid_list(tmp_path, capsys):
    argv = ["bench", "--benchmark", "rule-family", "--set", "max_test_taks=10", "--out", str(tmp_path / "r")]
    assert main(argv) == 1
    err = _one_line_error(capsys)
    assert "has no setting(s) ['max_test_taks']" in err and "'max_test_tasks'" in err
    assert not (tmp_path / "r").exists()


def test_bench_refuses_an_invalid_backbone_setting(tmp_path, capsys):
    argv = ["bench", "--benchmark", "rule-family", "--set", "max_length=0", "--out", str(tmp_path / "r")]
    assert main(argv) == 1
    assert "max_length must be an integer >= 1" in _one_line_error(capsys)
    assert not (tmp_path / "r").exists()


def test_bench_refuses_an_unknown_config_section(tmp_path, capsys):
    config = tmp_path / "bench.yaml"
    config.write_text("benchmark: rule-family\nmethod: {lift: {k: 2}}\n")  # "method" for "methods"
    assert main(["bench", "--config", str(config), "--out", str(tmp_path / "r")]) == 1
    assert "unknown section(s) ['method']" in _one_line_error(capsys)
    assert not (tmp_path / "r").exists()
