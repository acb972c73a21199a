"""Parsing BIG-bench generative tasks from a tiny hand-written benchmark_tasks tree (no downloads)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from liftpeft.data.bigbench_gen import (
    BigBenchGenConfig,
    build_bigbench_gen,
    load_bigbench_gen,
    parse_generative_spec,
    per_family,
    reference_target,
)

PLAIN = {"prompt_template": "{input}\n=", "meta_split": {"train": 0.5, "dev": 0.0, "test": 0.5}}


def _write(root: Path, rel: str, spec: dict) -> None:
    path = root / "bigbench" / "benchmark_tasks" / rel / "task.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec), encoding="utf-8")


def _examples(n: int, tag: str, **extra) -> list[dict]:
    return [{"input": f"{tag} {i}", "target": f"out {i}", **extra} for i in range(n)]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    _write(root, "list_functions", {"name": "list_functions", "description": "composite, no examples"})
    for c in ("c001", "c002", "c003", "c004"):
        _write(root, f"list_functions/{c}", {"examples": _examples(32, f"Q: [{c}]")})
    _write(root, "list_functions/00_shot_baseline", {"examples": _examples(250, "mixed")})
    arithmetic = _examples(100, "What is", target_scores={"0": 1.0, "banana": 0.0})
    _write(root, "arithmetic/2_digit_addition", {"examples": arithmetic})
    _write(root, "arithmetic/2_digit_subtraction", {"examples": _examples(120, "minus")})
    _write(root, "arithmetic/1_digit_division", {"examples": _examples(23, "div")})  # too small
    natural = [{"input": f"Passage {i}", "target": [f"Q{i}?", "alt"]} for i in range(40)]
    natural += [
        {"input": "Passage 0", "target": ["Q0?"]},  # a duplicate of the first
        {"input": "Passage x", "target": []},
        {"input": "  ", "target": "t"},
        {"input": "Passage y"},
    ]
    _write(
        root, "natural_instructions/subtask001_qg", {"task_prefix": "Definition: ask.", "examples": natural}
    )
    _write(root, "linguistic_mappings/plural", {"examples": _examples(70, "word")})
    for twin in ("get_day_1_dates_1", "get_day_1_dates_2"):  # the same examples, another prompt
        _write(
            root,
            f"mult_data_wrangling/{twin}",
            {"example_input_prefix": twin, "examples": _examples(32, "d")},
        )
    _write(root, "other_family/sub", {"examples": _examples(70, "ignored")})
    return root


def test_reference_is_the_string_or_the_first_listed_target():
    assert reference_target(" a ") == "a"
    assert reference_target(["first", "second"]) == "first"
    assert reference_target([]) is None
    assert reference_target(["  "]) is None
    assert reference_target(3) is None


def test_examples_drop_blank_missing_and_duplicate_ones():
    spec = {
        "task_prefix": "Do it.",
        "examples": [
            {"input": "a", "target": ["x", "y"]},
            {"input": "a", "target": "x"},
            {"input": "", "target": "x"},
            {"input": "b", "target": [""]},
            {"input": "c"},
        ],
    }
    source = parse_generative_spec("fam.t", "fam", spec, BigBenchGenConfig())
    assert source.pairs == [("a", "x")]
    assert dict(source.dropped) == {"duplicate": 1, "empty input": 1, "empty target": 1, "no target": 1}
    prefixed = parse_generative_spec("fam.t", "fam", spec, BigBenchGenConfig(prepend_task_prefix=True))
    assert prefixed.pairs[0] == ("Do it.\na", "x")


def test_split_per_family_and_meta_split(tree: Path):
    splits, report = build_bigbench_gen(tree, PLAIN)
    tasks = {t.name: t for s in splits.values() for t in s}
    assert "list_functions.00_shot_baseline" not in tasks  # excluded by pattern
    assert "other_family.sub" not in tasks and "list_functions" not in tasks
    assert "arithmetic.1_digit_division" in report["dropped"]
    assert "mult_data_wrangling.get_day_1_dates_1" in tasks
    assert report["dropped"]["mult_data_wrangling.get_day_1_dates_2"].startswith("same examples as")
    small = tasks["list_functions.c001"]  # 32 examples: 16 support / no dev / 16 query
    assert (len(small.train), len(small.dev), len(small.test)) == (16, 0, 16)
    large = tasks["arithmetic.2_digit_addition"]  # 100: 32 / 32 / 36
    assert (len(large.train), len(large.dev), len(large.test)) == (32, 32, 36)
    capped = tasks["arithmetic.2_digit_subtraction"]  # 120: 32 / 32 / the 56 left (the cap is 64)
    assert (len(capped.train), len(capped.dev), len(capped.test)) == (32, 32, 56)
    natural = tasks["natural_instructions.subtask001_qg"]  # 40 usable: 16 / 0 / 24
    assert (len(natural.train), len(natural.dev), len(natural.test)) == (16, 0, 24)
    assert all(e.target.startswith("Q") for e in natural.train + natural.test)
    assert small.kind == "text2text" and small.train[0].input.endswith("\n=")
    assert not {e.input for e in small.train} & {e.input for e in small.test}
    # held-out family: meta-test whole; others cut within the family, so both sides see list_functions
    assert tasks["linguistic_mappings.plural"] in splits["test"]
    lf = {s: [t.name for t in v if t.name.startswith("list_functions")] for s, v in splits.items()}
    assert len(lf["train"]) == 2 and len(lf["test"]) == 2
    assert report["per_family"]["list_functions"]["splits"] == {"16/0/16": 4}


def test_the_rules_are_deterministic_and_the_cache_round_trips(tree: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LIFTPEFT_CACHE", str(tmp_path / "cache"))
    packages = tmp_path / "cache" / "packages"
    packages.mkdir(parents=True)
    with tarfile.open(packages / "bigbench-1.0.0.tar.gz", "w:gz") as tar:  # streamed like the sdist
        tar.add(tree / "bigbench", arcname="bigbench-1.0.0/bigbench")
    first = load_bigbench_gen(PLAIN)
    again = load_bigbench_gen(PLAIN)  # from the cache
    direct, _ = build_bigbench_gen(tree, PLAIN)
    for split in first:
        assert (
            [t.name for t in first[split]]
            == [t.name for t in again[split]]
            == [t.name for t in direct[split]]
        )
        for a, b in zip(first[split], again[split]):
            assert a.train == b.train and a.test == b.test
    assert (first["test"] and first["train"]) and len(list((tmp_path / "cache" / "tasks").iterdir())) == 1


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"n_trian": 3}, "allowed"),
        ({"held_out_families": ["nope"]}, "not among families"),
        ({"prompt_template": "no slot"}, "holding {input}"),
        ({"meta_split": {"train": 0.5, "test": 0.2}}, "exactly train, dev, test"),
        ({"small_n_train": 64}, "must not exceed"),
    ],
)
def test_bad_rules_say_what_to_fix(rules, message):
    with pytest.raises(ValueError, match=message):
        BigBenchGenConfig.from_value(rules)


def test_per_family_keeps_the_first_tasks_of_each_family(tree: Path):
    splits, _ = build_bigbench_gen(tree, PLAIN)
    tasks = [t for s in splits.values() for t in s]
    names = [t.name for t in per_family(tasks, 1)]
    assert names == sorted(names) and len({n.split(".")[0] for n in names}) == len(names)
    with pytest.raises(ValueError, match="integer >= 1"):
        per_family(tasks, 0)


def test_data_fetch_bigbench_gen_caches_the_shipped_rules(tree: Path, tmp_path: Path, monkeypatch, capsys):
    from liftpeft.cli.main import main

    monkeypatch.setenv("LIFTPEFT_CACHE", str(tmp_path / "cache"))
    packages = tmp_path / "cache" / "packages"
    packages.mkdir(parents=True)
    with tarfile.open(packages / "bigbench-1.0.0.tar.gz", "w:gz") as tar:
        tar.add(tree / "bigbench", arcname="bigbench-1.0.0/bigbench")
    assert main(["data", "fetch", "bigbench-gen"]) == 0
    assert "tasks cached" in capsys.readouterr().out
    cached = list((tmp_path / "cache" / "tasks").glob("bigbench-gen-1.0.0-*/manifest.json"))
    assert len(cached) == 1
    manifest = json.loads(cached[0].read_text())
    assert manifest["config"] == BigBenchGenConfig().to_dict()
    assert manifest["report"]["meta_split"]["test"]  # linguistic_mappings at least
