"""The README's tour runs as written, on the workspace `liftpeft example` writes (offline, CPU)."""

import json
import re
import shlex
from pathlib import Path

import pytest

from liftpeft.cli.main import main
from liftpeft.example import tour_commands
from tests.outputs.test_claim import snapshot

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- tour:"


def readme_tour() -> list[str]:
    """The ``liftpeft`` lines of the fenced bash block right after the README's tour marker."""
    text = (ROOT / "README.md").read_text()
    assert text.count(MARKER) == 1, "README.md must hold one tour marker"
    block = re.search(r"```bash\n(.*?)\n```", text[text.index(MARKER) :], re.S)
    assert block is not None, "no ```bash block after the README's tour marker"
    lines = [" ".join(shlex.split(ln, comments=True)) for ln in block.group(1).splitlines()]
    return [ln for ln in lines if ln]


def _argv(command: str) -> list[str]:
    words = shlex.split(command, comments=True)
    assert words[0] == "liftpeft", f"the tour runs only liftpeft commands, not {command!r}"
    return words[1:]


def _out(argv: list[str]) -> Path | None:
    return Path(argv[argv.index("--out") + 1]) if "--out" in argv else None


# What each command leaves in its --out (or, for report / info / evaluate, elsewhere).
EXPECTED = {
    "example": [
        "EXAMPLE.md",
        "bench.yaml",
        "model/config.json",
        "tasks/train",
        "tasks/test/task-000/train.jsonl",
    ],
    "meta-train": ["method.json"],
    "zoo-prior": ["prior.json", "prior.safetensors"],
    "adapt": ["adapter_config.json", "adapter_model.safetensors", "liftpeft.json"],
    "bench": ["results.jsonl", "run.json", "report.md"],
    "compare": ["results.jsonl", "run.json", "report.md"],
}


def test_the_tour_runs_as_written(tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIFTPEFT_CACHE", str(tmp_path / "cache"))  # bench builds its tiny model there
    commands = readme_tour()
    assert commands and _argv(commands[0])[0] == "example"
    ran = set()
    for command in commands:
        argv = _argv(command)
        capsys.readouterr()
        assert main(argv) == 0, f"`{command}` failed"
        printed = capsys.readouterr().out
        name = argv[0]
        ran.add(name)
        for entry in EXPECTED.get(name, []):
            assert (_out(argv) / entry).exists(), f"`{command}` did not write {entry}"
        if name == "evaluate":
            assert "accuracy" in json.loads(printed)
        elif name == "info":
            assert "kind" in printed and "prior" in printed
        elif name == "report":
            results = Path(argv[1])
            assert (results / "report.md").is_file() and (results / "report.html").is_file()
        elif name == "methods":
            assert "lift" in printed
    assert {
        "example",
        "meta-train",
        "adapt",
        "evaluate",
        "info",
        "zoo-prior",
        "bench",
        "report",
        "compare",
    } <= ran


def test_example_md_lists_the_rest_of_the_tour(tmp_path):
    from liftpeft.example import write_example

    out = write_example(tmp_path / "example")
    readme = (out / "EXAMPLE.md").read_text()
    shown = re.search(r"```bash\n(.*?)\n```", readme, re.S).group(1).splitlines()
    assert readme_tour()[1:] == tour_commands("example") == shown


def test_example_refuses_a_foreign_directory_untouched(tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("my notes")
    (foreign / "model").mkdir()  # a namesake of ours is still not ours
    (foreign / "model" / "weights.bin").write_bytes(b"\x00\x01")
    before = snapshot(foreign)
    assert main(["example", "--out", str(foreign)]) == 1
    assert "not empty" in capsys.readouterr().err
    assert snapshot(foreign) == before


def test_example_overwrite_keeps_a_users_file(tmp_path, capsys):
    out = tmp_path / "example"
    assert main(["example", "--out", str(out)]) == 0
    assert "next: liftpeft meta-train" in capsys.readouterr().out
    (out / "my-notes.txt").write_text("keep me")
    (out / "tasks" / "train" / "task-000" / "train.jsonl").write_text("stale\n")
    assert main(["example", "--out", str(out)]) == 1  # an example is there: --overwrite needed
    assert "--overwrite" in capsys.readouterr().err
    assert main(["example", "--out", str(out), "--overwrite"]) == 0
    assert (out / "my-notes.txt").read_text() == "keep me"
    assert (out / "tasks" / "train" / "task-000" / "train.jsonl").read_text() != "stale\n"
    assert (out / "model" / "config.json").is_file() and (out / "EXAMPLE.md").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".liftpeft-build-")]


@pytest.mark.parametrize("argv", [["example"], ["example", "--overwrite"]])
def test_example_needs_out(argv, capsys):
    assert main(argv) == 2
    assert "--out" in capsys.readouterr().err
