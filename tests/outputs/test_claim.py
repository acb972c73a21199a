"""``claim_output``: what a command may do to the directory it writes into."""

import json
import os
import stat

import pytest

from liftpeft.atomic import atomic_write_text
from liftpeft.outputs import MARKER, OutputError, claim_output, read_kind


def snapshot(root):
    """Every file and folder under ``root`` with its bytes and mode (to prove nothing changed)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            data = open(path, "rb").read() if stat.S_ISREG(info.st_mode) else None
            out[os.path.relpath(path, root)] = (stat.S_IMODE(info.st_mode), data)
    return out


@pytest.fixture
def foreign(tmp_path):
    folder = tmp_path / "mine"
    (folder / "data").mkdir(parents=True)
    (folder / "notes.txt").write_text("my notes")
    (folder / "data" / "train.jsonl").write_text("{}\n")
    (folder / "prior.safetensors").write_text("not ours, same name")
    return folder


@pytest.mark.parametrize("kind", ["prior", "adapter", "bench", "report", "example"])
@pytest.mark.parametrize("flags", [{}, {"overwrite": True}, {"resume": True}])
def test_a_foreign_non_empty_directory_is_refused_byte_identical(foreign, kind, flags):
    before = snapshot(foreign)
    with pytest.raises(OutputError, match=r"is not empty .* holds no liftpeft"):
        claim_output(foreign, kind, **flags)
    assert snapshot(foreign) == before


def test_a_file_is_refused(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(OutputError, match="is a file, not a directory"):
        claim_output(target, "prior")
    assert target.read_text() == "x"


def test_another_kind_is_refused(tmp_path):
    claim_output(tmp_path / "p", "prior")
    (tmp_path / "p" / "prior.json").write_text("{}")
    before = snapshot(tmp_path / "p")
    with pytest.raises(OutputError, match=r"holds liftpeft.s meta-trained state, not an adapter"):
        claim_output(tmp_path / "p", "adapter", overwrite=True)
    assert snapshot(tmp_path / "p") == before


def test_same_kind_needs_overwrite_or_resume_and_overwrite_keeps_user_files(tmp_path):
    out = tmp_path / "prior"
    claim_output(out, "prior")
    for name in ("prior.json", "prior.safetensors", "metrics.jsonl"):
        (out / name).write_text("old run")
    (out / "checkpoint").mkdir()
    (out / "checkpoint" / "state.json").write_text("old")
    (out / "NOTES.md").write_text("user notes")
    before = snapshot(out)
    with pytest.raises(
        OutputError, match=r"already holds a liftpeft meta-trained state; pass --overwrite .* or --resume"
    ):
        claim_output(out, "prior", can_resume=True)
    assert snapshot(out) == before
    kept = claim_output(out, "prior", resume=True)
    assert kept.existed and snapshot(out) == before
    claim_output(out, "prior", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "NOTES.md"])
    assert (out / "NOTES.md").read_text() == "user notes"


def test_check_only_changes_nothing(tmp_path):
    out = tmp_path / "new"
    claim_output(out, "adapter", check_only=True)
    assert not out.exists()
    claim_output(out, "adapter")
    (out / "liftpeft.json").write_text("{}")
    (out / "adapter_config.json").write_text("{}")
    before = snapshot(out)
    claim_output(out, "adapter", overwrite=True, check_only=True)
    assert snapshot(out) == before


def test_legacy_artefacts_without_a_marker_are_recognised(tmp_path):
    (tmp_path / "prior.json").write_text("{}")
    (tmp_path / "prior.safetensors").write_text("x")
    (tmp_path / "keep.txt").write_text("k")
    assert read_kind(tmp_path) == "prior"
    claim_output(tmp_path, "prior", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([MARKER, "keep.txt"])


def test_build_publishes_whole_files_and_a_failure_leaves_the_directory_as_it_was(tmp_path):
    out = claim_output(tmp_path / "a", "adapter")
    with out, out.build() as tmp:
        (tmp / "adapter_config.json").write_text("{}")
        (tmp / "liftpeft.json").write_text("{}")
    assert read_kind(out.path) == "adapter"
    before = snapshot(out.path)
    again = claim_output(out.path, "adapter", resume=True)
    with pytest.raises(KeyboardInterrupt), again.build() as tmp:
        (tmp / "adapter_config.json").write_text("new")
        raise KeyboardInterrupt
    assert snapshot(out.path) == before  # the build folder is gone too


def test_a_failed_command_removes_only_the_directory_it_created(tmp_path):
    with pytest.raises(RuntimeError), claim_output(tmp_path / "fresh", "prior"):
        raise RuntimeError("bad input")
    assert not (tmp_path / "fresh").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError), claim_output(tmp_path / "empty", "prior"):
        raise RuntimeError("bad input")
    assert (tmp_path / "empty").is_dir() and not any((tmp_path / "empty").iterdir())


def test_the_current_directory_works_when_empty(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = claim_output(".", "adapter")
    with out, out.build() as tmp:
        (tmp / "adapter_config.json").write_text("{}")
        (tmp / "liftpeft.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [MARKER, "adapter_config.json", "liftpeft.json"]
    )


def test_marker_lists_the_entries_overwrite_may_remove(tmp_path):
    claim_output(tmp_path, "report")
    marker = json.loads((tmp_path / MARKER).read_text())
    assert marker["kind"] == "report" and "report.md" in marker["entries"]


def test_written_files_get_the_usual_mode(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "x.txt", "hi")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_build_folder_left_by_a_killed_run_is_cleaned_on_the_next_claim(tmp_path):
    out = claim_output(tmp_path / "s", "prior")
    (out.path / "state.json").write_text("{}")
    (out.path / ".liftpeft-build-x").mkdir()
    (out.path / ".liftpeft-build-x" / "method.json").write_text("{}")
    again = claim_output(out.path, "prior", resume=True)
    assert again.existed and not (out.path / ".liftpeft-build-x").exists()
    assert (out.path / "state.json").is_file()
