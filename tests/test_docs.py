"""The documentation stays true: the API examples run, every method and benchmark is documented."""

import doctest
from pathlib import Path

import liftpeft.api
from liftpeft.bench import available_benchmarks
from liftpeft.methods import available_methods

ROOT = Path(__file__).resolve().parents[1]


def test_api_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(liftpeft.api, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 5 and result.failed == 0


def test_every_method_and_benchmark_is_documented():
    methods_doc = (ROOT / "docs" / "methods.md").read_text()
    for name in available_methods():
        assert f"`{name}`" in methods_doc, f"docs/methods.md does not describe {name}"
    benchmarks_doc = (ROOT / "docs" / "benchmarks.md").read_text()
    for name in available_benchmarks():
        assert f"`{name}`" in benchmarks_doc, f"docs/benchmarks.md does not describe {name}"


def test_readme_opens_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    commands = [
        ln for ln in lines[:20] if "pip install torch==2.13.0 && pip install -c constraints.txt" in ln
    ]
    assert len(commands) == 2 and "liftpeft demo" in commands[0] and "pytest" in commands[1]
