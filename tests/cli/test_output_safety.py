"""Every command that writes refuses a foreign non-empty --out untouched, and --overwrite replaces
only the command's own files (a user's notes beside them stay)."""

from types import SimpleNamespace

import pytest

from liftpeft.cli.main import main
from liftpeft.data.synthetic import write_rule_family
from liftpeft.peft_integration.tiny import make_tiny_model
from tests.cli.conftest import TINY_META_TRAIN as TINY
from tests.outputs.test_claim import snapshot


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety")
    make_tiny_model("bert", root / "model")
    write_rule_family(root / "tasks", n_tasks=3, n_test_tasks=1)
    meta = ["meta-train", "--model", str(root / "model"), "--tasks", str(root / "tasks" / "train")]
    assert main([*meta, "--out", str(root / "prior"), "--k", "1", "--steps", "12", *TINY]) == 0
    return SimpleNamespace(root=root, meta=meta, task=str(root / "tasks" / "test" / "task-000"))


def _foreign(folder):
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes")
    (folder / "prior.json").mkdir()  # even a namesake of our files is not ours without a marker
    (folder / "tasks").mkdir()
    (folder / "tasks" / "train.jsonl").write_text("{}\n")
    return folder


def _commands(w, out):
    return {
        "meta-train": [*w.meta, "--out", out, "--k", "1", "--steps", "12", *TINY],
        "zoo-prior": ["zoo-prior", "--adapters", str(w.root / "zoo"), "--k", "1", "--out", out, "--quiet"],
        "adapt": [
            "adapt",
            "--prior",
            str(w.root / "prior"),
            "--task",
            w.task,
            "--out",
            out,
            "--steps",
            "2",
            "--quiet",
        ],
        "bench": [
            "bench",
            "--benchmark",
            "rule-family",
            "--methods",
            "no-meta",
            "--seeds",
            "1",
            "--out",
            out,
        ],
        "report": ["report", str(w.root / "results"), "--out", out],
    }


@pytest.fixture(scope="module")
def zoo(w):
    for i in range(2):
        assert (
            main(
                [
                    "adapt",
                    "--prior",
                    str(w.root / "prior"),
                    "--task",
                    w.task,
                    "--out",
                    str(w.root / "zoo" / f"a{i}"),
                    "--steps",
                    "2",
                    "--seed",
                    str(i),
                    "--quiet",
                ]
            )
            == 0
        )
    return w.root / "zoo"


WRITERS = ["meta-train", "zoo-prior", "adapt", "bench", "report", "--out ."]
OVERWRITERS = ["meta-train", "zoo-prior", "adapt", "--out ."]


@pytest.mark.parametrize(
    ("command", "flag"), [(c, []) for c in WRITERS] + [(c, ["--overwrite"]) for c in OVERWRITERS]
)
def test_a_foreign_directory_is_refused_and_left_byte_identical(
    w, zoo, tmp_path, capsys, command, flag, monkeypatch
):
    target = _foreign(tmp_path / "theirs")
    before = snapshot(target)
    if command == "--out .":
        monkeypatch.chdir(target)
        argv = [*_commands(w, ".")["adapt"], *flag]
    else:
        argv = [*_commands(w, str(target))[command], *flag]
    if command == "report":
        (w.root / "results").mkdir(exist_ok=True)
        (w.root / "results" / "results.jsonl").write_text("")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "holds no liftpeft" in err and "nothing in it was changed" in err and len(err.splitlines()) == 1
    assert snapshot(target) == before


def test_bench_merge_refuses_a_foreign_directory(w, tmp_path, capsys):
    (w.root / "src-results").mkdir(exist_ok=True)
    (w.root / "src-results" / "results.jsonl").write_text("")
    target = _foreign(tmp_path / "theirs")
    before = snapshot(target)
    assert main(["bench", "--merge", str(w.root / "src-results"), "--out", str(target)]) == 1
    assert "holds no liftpeft results directory" in capsys.readouterr().err
    assert snapshot(target) == before


@pytest.mark.parametrize("command", ["meta-train", "zoo-prior", "adapt"])
def test_rewriting_needs_overwrite_which_keeps_the_users_files(w, zoo, tmp_path, capsys, command):
    out = tmp_path / "out"
    argv = _commands(w, str(out))[command]
    assert main(argv) == 0
    (out / "NOTES.md").write_text("mine")
    first = snapshot(out)
    assert main(argv) == 1
    assert "already holds a liftpeft" in capsys.readouterr().err and snapshot(out) == first
    if command == "meta-train":  # another run's checkpoint and metrics must not survive beside the new prior
        (out / "run").mkdir(exist_ok=True)
        (out / "run" / "stale.txt").write_text("other run")
    assert main([*argv, "--overwrite"]) == 0
    assert (out / "NOTES.md").read_text() == "mine"
    assert not (out / "run" / "stale.txt").exists()
    assert set(p.name for p in out.iterdir()) >= {"NOTES.md"}


def test_adapt_into_the_current_directory(w, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(_commands(w, ".")["adapt"]) == 0
    assert (tmp_path / "adapter_config.json").is_file() and (tmp_path / "liftpeft.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") and p.name != ".liftpeft-output.json"]


def test_bench_refuses_another_benchmarks_results(w, tmp_path, capsys):
    out = tmp_path / "results"
    out.mkdir()
    (out / "run.json").write_text('{"benchmark": "shakespeare"}')
    (out / "results.jsonl").write_text("")
    before = snapshot(out)
    assert main(_commands(w, str(out))["bench"]) == 1
    err = capsys.readouterr().err
    assert "holds results of benchmark 'shakespeare', not 'rule-family'" in err
    assert snapshot(out) == before


def test_bench_seeds_zero_is_refused(tmp_path, capsys):
    assert main(["bench", "--benchmark", "rule-family", "--seeds", "0", "--out", str(tmp_path / "r")]) == 1
    assert "--seeds N with N >= 1" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_every_written_file_has_the_users_usual_mode(w, zoo, tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    os.umask(umask)
    expected = 0o666 & ~umask
    for folder in (w.root / "prior", zoo / "a0"):
        modes = {
            p.relative_to(folder): stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*") if p.is_file()
        }
        assert modes and set(modes.values()) == {expected}, modes
