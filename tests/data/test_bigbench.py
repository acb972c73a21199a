"""BIG-bench classification pool: the loader's decisions on a tiny hand-made sdist (no network)."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import tarfile
from pathlib import Path

import pytest

from liftpeft.data import bigbench
from liftpeft.data.bigbench import (
    BigBenchClsConfig,
    assign_meta_splits,
    bigbench_cls_folder,
    build_bigbench_cls,
    chance_accuracy,
    load_bigbench_cls,
    load_bigbench_config,
    majority_class_rate,
    parse_target_scores,
)
from liftpeft.data.bigbench_config import default_config_path
from liftpeft.data.cache import FetchError, download_sdist
from liftpeft.tasks.schema import ChoiceExample, Task

# The hand-written fixture tasks are small: keep tasks with any test examples left.
SMALL = {"min_test_examples": 1}

ROOT = "bigbench-1.0.0/bigbench/benchmark_tasks"


def _binary(topic: str, n: int) -> list[dict]:
    """``n`` yes/no questions whose answer alternates (a fixed option set)."""
    return [
        {"input": f"Is {topic} statement {i} true?", "target_scores": {"yes": i % 2, "no": 1 - i % 2}}
        for i in range(n)
    ]


def _varied(topic: str, n: int, n_options: int = 4) -> list[dict]:
    """``n`` questions with their own options; the correct one is always listed first."""
    return [
        {
            "input": f"Which {topic} fits case {i}?",
            "target_scores": {f"{topic} {i}-{j}": float(j == 0) for j in range(n_options)},
        }
        for i in range(n)
    ]


def _fake_tasks() -> dict[str, dict | str]:
    """Folder -> task.json dict (or the text of a task.py)."""
    mixed = _binary("mixed", 70)
    mixed[0]["target_scores"] = json.dumps({"yes": 1, "no": 0})  # a JSON string
    mixed[1]["target_scores"] = "{'yes': 0.0, 'no': 1.0}"  # a Python literal string
    mixed[2]["target_scores"] = {"yes": 1, "no": 1}  # a tie
    mixed[3]["target_scores"] = "__import__('os').getcwd()"  # never evaluated
    mixed[4]["input"] = "   "  # blank input
    mixed[5]["target_scores"] = {"yes": 1}  # one option
    mixed.append(dict(mixed[10]))  # an exact duplicate
    flipped = {"yes": mixed[12]["target_scores"]["no"], "no": mixed[12]["target_scores"]["yes"]}
    mixed.append({"input": mixed[12]["input"], "target_scores": flipped})  # conflicting answer
    tasks: dict[str, dict | str] = {
        "mixed_formats": {
            "keywords": ["multiple choice"],
            "task_prefix": "Answer yes or no.",
            "examples": mixed,
        },
        "french_task": {"keywords": ["non-English", "multiple choice"], "examples": _binary("fr", 80)},
        "hindi_untagged": {
            "keywords": ["multiple choice"],
            "examples": [
                {"input": f"क्या यह सच है {i}?", "target_scores": {"हां": i % 2, "नहीं": 1 - i % 2}}
                for i in range(80)
            ],
        },
        "tiny_task": {"keywords": [], "examples": _binary("tiny", 40)},
        "generative": {"keywords": [], "examples": [{"input": f"q{i}", "target": "a"} for i in range(90)]},
        "programmatic/task.py": "# a programmatic task: no task.json\n",
        "many_options": {"keywords": [], "examples": _varied("many", 80, n_options=12)},
        "long_inputs": {
            "keywords": [],
            "examples": [
                {"input": "long " * 250 + str(i), "target_scores": {"a": 1, "b": 0}} for i in range(80)
            ],
        },
        "composite": {"keywords": ["multiple choice"], "description": "parent of subtasks"},
        "composite/sub_a": {"keywords": [], "examples": _varied("suba", 90)},
        "composite/sub_b": {"keywords": [], "examples": _binary("subb", 90)},
        "composite/sub_c": {"keywords": [], "examples": _varied("subc", 90, n_options=3)},
        "tagged_parent": {"keywords": ["multilingual"], "description": "subtasks inherit this"},
        "tagged_parent/sub_en": {"keywords": ["multiple choice"], "examples": _binary("tp", 90)},
    }
    for i in range(12):
        tasks[f"plain_{i:02d}"] = {"keywords": ["multiple choice"], "examples": _varied(f"p{i}", 70 + 40 * i)}
    return tasks


def write_fake_sdist(path: Path, tasks: dict[str, dict | str]) -> Path:
    """A tar.gz laid out like the bigbench sdist, holding ``tasks``."""
    with tarfile.open(path, "w:gz") as tar:
        for folder, spec in tasks.items():
            if isinstance(spec, str):
                name, data = f"{ROOT}/{folder}", spec.encode()
            else:
                body = {"canary": "fixture", "name": folder, "description": "", **spec}
                name, data = f"{ROOT}/{folder}/task.json", json.dumps(body).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        readme = tarfile.TarInfo("bigbench-1.0.0/README.md")
        readme.size = 2
        tar.addfile(readme, io.BytesIO(b"hi"))
    return path


@pytest.fixture()
def sdist(tmp_path: Path) -> Path:
    return write_fake_sdist(tmp_path / "bigbench-1.0.0.tar.gz", _fake_tasks())


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("LIFTPEFT_CACHE", str(root))
    (root / "packages").mkdir(parents=True)
    write_fake_sdist(root / "packages" / "bigbench-1.0.0.tar.gz", _fake_tasks())
    return root


def _all(splits: dict[str, list[Task]]) -> dict[str, Task]:
    return {t.name: t for tasks in splits.values() for t in tasks}


# ----------------------------------------------------------------------------- parsing


def test_parse_target_scores_accepts_mappings_and_their_strings() -> None:
    assert parse_target_scores({"a": 1, "b": 0.5}) == {"a": 1.0, "b": 0.5}
    assert parse_target_scores('{"a": 1, "b": 0}') == {"a": 1.0, "b": 0.0}
    assert parse_target_scores("{'a': 1, 'b': 0}") == {"a": 1.0, "b": 0.0}
    assert parse_target_scores({"a": "1", "b": "0"}) == {"a": 1.0, "b": 0.0}


@pytest.mark.parametrize(
    "value",
    [
        "__import__('os').getcwd()",
        "[1, 2]",
        "{'a': 'high'}",
        {"a": True, "b": False},
        {"a": float("nan"), "b": 0},
        None,
        3,
        "{1: 0, 2: 1}",
    ],
)
def test_parse_target_scores_rejects_everything_else(value: object) -> None:
    assert parse_target_scores(value) is None


# ----------------------------------------------------------------------------- decisions


def test_loader_keeps_and_drops_the_right_tasks(
    sdist: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="liftpeft.data.bigbench"):
        splits, report = build_bigbench_cls(sdist, {**SMALL, "max_subtasks_per_task": 2})
    kept = _all(splits)
    dropped = report["dropped"]
    assert "mixed_formats" in kept
    assert all(f"plain_{i:02d}" in kept for i in range(12))
    assert dropped["french_task"].startswith("language: keywords")
    assert dropped["tagged_parent.sub_en"].startswith("language: keywords")  # inherited keyword
    assert dropped["hindi_untagged"].startswith("language: 100%")  # script rule, no keyword
    assert "min_examples" in dropped["tiny_task"]
    assert dropped["generative"] == "no target_scores examples"
    assert "max_options" in dropped["many_options"]
    assert "max_median_input_chars" in dropped["long_inputs"]
    assert "programmatic" not in kept and "programmatic" not in dropped
    assert "composite" not in kept and "composite" not in dropped  # a parent is not a task
    subtasks = {n for n in kept if n.startswith("composite.")}
    assert len(subtasks) == 2
    assert subtasks < {"composite.sub_a", "composite.sub_b", "composite.sub_c"}
    assert sum(r.startswith("subtask cap") for r in dropped.values()) == 1
    assert report["scan"]["programmatic_folders"] == 1
    assert report["scan"]["composite_tasks"] == 2
    assert report["steps"][0]["step"] == "multiple choice"
    assert "tasks kept" in caplog.text
    assert capsys.readouterr().out == ""


def test_examples_are_parsed_labelled_and_deduplicated(sdist: Path) -> None:
    splits, report = build_bigbench_cls(sdist, SMALL)
    task = _all(splits)["mixed_formats"]
    examples = task.train + task.dev + task.test
    by_input = {e.input: e for e in examples}
    # 72 examples: tie, bad string, blank input, one option, and both conflicting copies dropped,
    # the exact duplicate kept once; string target_scores parsed.
    assert len(examples) == 72 - 5 - 1 - 2 + 1

    def answer(i: int) -> str:
        example = by_input[f"Is mixed statement {i} true?"]
        return example.options[example.label]

    assert (answer(0), answer(1)) == ("yes", "no")  # from a JSON string and a Python literal
    for gone in (2, 3, 4, 5, 12):
        assert f"Is mixed statement {gone} true?" not in by_input
    assert all(e.input == e.input.strip() and not e.input.startswith("Answer") for e in examples)
    assert report["examples_dropped"]["mixed_formats"] == {
        "tie for the top score": 1,
        "unreadable target_scores": 1,
        "empty input": 1,
        "fewer than 2 options": 1,
        "duplicate": 1,
        "duplicate with another answer": 2,
    }
    # A fixed option set keeps one order; varied options are shuffled although the file lists the
    # answer first.
    assert {e.options for e in examples} == {("yes", "no")}
    plain = _all(splits)["plain_03"]
    labels = [e.label for e in plain.train + plain.dev + plain.test]
    assert len(set(labels)) == 4
    for e in plain.test:
        assert e.options[e.label].endswith("-0")


def test_task_prefix_is_prepended_only_when_asked(sdist: Path) -> None:
    splits, _ = build_bigbench_cls(sdist, {**SMALL, "prepend_task_prefix": True})
    task = _all(splits)["mixed_formats"]
    assert all(e.input.startswith("Answer yes or no.\nIs mixed") for e in task.train)


def test_per_task_splits_are_sized_and_deterministic(sdist: Path, tmp_path: Path) -> None:
    first, _ = build_bigbench_cls(sdist, SMALL)
    again, _ = build_bigbench_cls(sdist, SMALL)
    assert first == again
    for task in _all(first).values():
        n = len(task.train) + len(task.dev) + len(task.test)
        assert (len(task.train), len(task.dev)) == (32, 32)
        assert 1 <= len(task.test) <= 256 and n >= 65
    assert len(_all(first)["plain_11"].test) == 256  # 510 examples, capped
    # A task's split and its meta split do not depend on which other tasks exist.
    fewer = {k: v for k, v in _fake_tasks().items() if k not in ("plain_00", "composite/sub_b")}
    smaller, _ = build_bigbench_cls(write_fake_sdist(tmp_path / "small.tar.gz", fewer))
    assert _all(smaller)["plain_05"] == _all(first)["plain_05"]
    shuffled = _all(first)["plain_05"]
    assert [e.input for e in shuffled.train] != sorted(e.input for e in shuffled.train)


def test_meta_split_keeps_parents_together_and_follows_fractions(sdist: Path) -> None:
    splits, report = build_bigbench_cls(sdist, {**SMALL, "max_subtasks_per_task": None})
    where = {t.name: s for s, tasks in splits.items() for t in tasks}
    assert len({where[n] for n in where if n.startswith("composite.")}) == 1
    assert sorted(where) == sorted(n for names in report["meta_split"].values() for n in names)
    config = BigBenchClsConfig()
    singles = assign_meta_splits({f"task{i}": 1 for i in range(100)}, config)
    counts = {s: sum(v == s for v in singles.values()) for s in ("train", "dev", "test")}
    assert counts == {"train": 60, "dev": 10, "test": 30}
    assert singles == assign_meta_splits({f"task{i}": 1 for i in range(100)}, config)
    salted = assign_meta_splits({f"task{i}": 1 for i in range(100)}, BigBenchClsConfig(split_salt="x"))
    assert salted != singles


# ----------------------------------------------------------------------------- config


def test_packaged_yaml_is_read_and_matches_the_defaults() -> None:
    assert default_config_path().is_file()
    assert load_bigbench_config() == BigBenchClsConfig()
    assert load_bigbench_config(default_config_path()) == BigBenchClsConfig()


def test_yaml_file_values_reach_the_loader(sdist: Path, tmp_path: Path) -> None:
    path = tmp_path / "strict.yaml"
    path.write_text("max_options: 3\nmin_test_examples: 1\nmeta_split: {train: 0.5, dev: 0.0, test: 0.5}\n")
    config = load_bigbench_config(path)
    assert config.max_options == 3 and config.n_train == 32
    splits, report = build_bigbench_cls(sdist, path)
    assert "max_options=3" in report["dropped"]["plain_00"]
    assert "mixed_formats" in _all(splits) and not splits["dev"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"n_train": 0}, "n_train must be an integer >= 1"),
        ({"n_dev": 2.5}, "n_dev must be an integer"),
        ({"max_options": 1}, "max_options must be an integer >= 2"),
        ({"min_examples": 10}, "smaller than n_train + n_dev"),
        ({"meta_split": {"train": 0.7, "dev": 0.1, "test": 0.3}}, "must sum to 1"),
        ({"meta_split": {"train": 1.0}}, "exactly the keys train, dev, test"),
        ({"max_non_latin_fraction": 2}, "in [0, 1]"),
        ({"exclude_keywords": "non-English"}, "list of strings"),
        ({"prepend_task_prefix": "yes"}, "true or false"),
        ({"max_option": 4}, "unknown key(s) ['max_option']"),
    ],
)
def test_bad_config_values_raise_helpful_errors(values: dict, message: str) -> None:
    with pytest.raises(
        ValueError,
        match=r".*"
        + message.replace("[", r"\[")
        .replace("(", r"\(")
        .replace(")", r"\)")
        .replace("]", r"\]")
        .replace("+", r"\+"),
    ):
        load_bigbench_config(values)


def test_bad_yaml_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("max_test: -3\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: max_test must be an integer >= 1"):
        load_bigbench_config(path)


# ----------------------------------------------------------------------------- cache


def test_cache_round_trip_does_not_reread_the_archive(cache: Path) -> None:
    config = {"max_subtasks_per_task": 2}
    assert not (cache / "tasks").exists()
    built = load_bigbench_cls(config)
    folder = bigbench_cls_folder(config)
    assert folder.parent == cache / "tasks" and folder.name.startswith("bigbench-cls-1.0.0-")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["config"]["max_subtasks_per_task"] == 2
    assert (folder / "train").is_dir() and (folder / "test").is_dir()
    (cache / "packages" / "bigbench-1.0.0.tar.gz").unlink()  # the second load must not need it
    assert load_bigbench_cls(config) == built
    assert bigbench_cls_folder({"max_subtasks_per_task": 3}) != folder


def test_no_cache_writes_nothing(cache: Path) -> None:
    splits = load_bigbench_cls(cache=False)
    assert splits["train"]
    assert not bigbench_cls_folder().exists()


def test_an_incomplete_cache_folder_is_rebuilt(cache: Path) -> None:
    folder = bigbench_cls_folder()
    (folder / "train" / "junk").mkdir(parents=True)
    splits = load_bigbench_cls()
    assert not (folder / "train" / "junk").exists()
    assert load_bigbench_cls() == splits


# ----------------------------------------------------------------------------- chance, fetch


def test_chance_and_majority_rates() -> None:
    yes_no = ("yes", "no")
    task = Task(
        "t",
        "choice",
        train=[ChoiceExample("a", yes_no, 0)],
        test=[
            ChoiceExample("b", yes_no, 0),
            ChoiceExample("c", yes_no, 0),
            ChoiceExample("d", yes_no, 1),
        ],
    )
    assert chance_accuracy(task) == pytest.approx(0.5)
    assert majority_class_rate(task) == pytest.approx(2 / 3)
    varied = Task(
        "v",
        "choice",
        train=[ChoiceExample("a", yes_no, 0)],
        test=[
            ChoiceExample("b", ("x", "y", "z", "w"), 1),
            ChoiceExample("c", yes_no, 0),
        ],
    )
    assert chance_accuracy(varied) == pytest.approx((0.25 + 0.5) / 2)
    assert majority_class_rate(varied) is None
    with pytest.raises(ValueError, match="no dev examples"):
        chance_accuracy(varied, "dev")


def test_fetch_failure_names_the_manual_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFTPEFT_CACHE", str(tmp_path))
    failed = subprocess.CompletedProcess([], 1, stdout="", stderr="ERROR: network is unreachable")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(FetchError) as err:
        bigbench.fetch_bigbench()
    message = str(err.value)
    assert "network is unreachable" in message
    assert "-m pip download --no-deps" in message and "bigbench==1.0.0" in message
    assert str(tmp_path / "packages") in message


def test_fetch_uses_an_archive_already_in_the_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess, "run", pytest.fail)
    assert bigbench.fetch_bigbench() == cache / "packages" / "bigbench-1.0.0.tar.gz"
    assert download_sdist("bigbench", "1.0.0") == bigbench.fetch_bigbench()
