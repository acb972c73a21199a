"""Tasks from ``datasets``: in-memory datasets, save_to_disk directories, data files, streaming, errors."""

import json

import pytest

datasets = pytest.importorskip("datasets")
pytestmark = pytest.mark.filterwarnings("ignore:.*is left out:UserWarning")

from liftpeft.cli.main import main  # noqa: E402
from liftpeft.tasks import read_task_collection  # noqa: E402
from liftpeft.tasks.from_datasets import (  # noqa: E402
    Carve,
    ColumnMapping,
    MappingError,
    tasks_from_datasets,
    tasks_from_source,
    write_tasks_from_datasets,
)

FEATURES = datasets.Features(
    {
        "sentence": datasets.Value("string"),
        "label": datasets.ClassLabel(names=["negative", "positive"]),
        "task": datasets.Value("string"),
    }
)


def _rows(n=40, tasks=("alpha", "beta")):
    return {
        "sentence": [f"sentence {i}" for i in range(n)],
        "label": [i % 2 for i in range(n)],
        "task": [tasks[i * len(tasks) // n] for i in range(n)],
    }


@pytest.fixture
def dataset_dict():
    return datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(_rows(), features=FEATURES),
            "validation": datasets.Dataset.from_dict(_rows(8), features=FEATURES),
            "unused": datasets.Dataset.from_dict(_rows(4), features=FEATURES),
        }
    )


def _sizes(tasks):
    return {t.name: (t.kind, len(t.train), len(t.dev), len(t.test)) for t in tasks}


def test_classlabel_names_become_options_and_splits_map(dataset_dict):
    with pytest.warns(UserWarning, match="'unused' is left out"):
        (task,) = tasks_from_source(dataset_dict, ColumnMapping(input="sentence", label="label"), name="sst")
    assert task.kind == "choice" and (len(task.train), len(task.dev), len(task.test)) == (40, 8, 0)
    assert task.train[1].options == ("negative", "positive") and task.train[1].label == 1
    assert task.train[1].input == "sentence 1"


def test_task_column_carve_and_cap(dataset_dict):
    mapping = ColumnMapping(input="sentence", label="label", task="task")
    tasks = tasks_from_source(dataset_dict, mapping, carve=Carve(4, 3), splits={"train": "train"})
    # no held-out split mapped: the carved rest of each task's 20 train rows is its test split
    assert _sizes(tasks) == {"alpha": ("choice", 4, 3, 13), "beta": ("choice", 4, 3, 13)}
    tasks = tasks_from_source(
        dataset_dict, mapping, carve=Carve(4, 3), splits={"train": "train", "validation": "dev"}
    )
    # the source's validation rows are the test split; carved rows past train + dev are left out
    assert _sizes(tasks) == {"alpha": ("choice", 4, 3, 4), "beta": ("choice", 4, 3, 4)}
    capped = tasks_from_source(dataset_dict["train"], mapping, max_examples=5)
    assert _sizes(capped) == {"alpha": ("choice", 5, 0, 0), "beta": ("choice", 5, 0, 0)}


def test_streaming_reads_only_what_the_cap_needs(dataset_dict):
    seen = []

    def rows():
        for i in range(10_000):
            seen.append(i)
            yield {"sentence": f"s{i}", "label": i % 2, "task": "alpha" if i % 3 else "beta"}

    stream = datasets.IterableDataset.from_generator(rows, features=FEATURES)
    mapping = ColumnMapping(input="sentence", label="label", task="task")
    tasks = tasks_from_source(stream, mapping, max_examples=6, keep_tasks=["alpha", "beta"])
    assert _sizes(tasks) == {"alpha": ("choice", 6, 0, 0), "beta": ("choice", 6, 0, 0)}
    assert len(seen) < 100  # stopped once both tasks were full, not after 10,000 rows
    streamed = tasks_from_source(dataset_dict, mapping, streaming=True, max_examples=3)
    assert _sizes(streamed) == {"alpha": ("choice", 3, 3, 0), "beta": ("choice", 3, 3, 0)}


def test_save_to_disk_dir_and_data_files(tmp_path, dataset_dict):
    saved = tmp_path / "saved"
    dataset_dict.save_to_disk(str(saved))
    jsonl = tmp_path / "qa.jsonl"
    jsonl.write_text("".join(json.dumps({"q": f"q{i}", "a": [f"a{i}", "alt"]}) + "\n" for i in range(6)))
    csv = tmp_path / "reviews.csv"
    csv.write_text("text,stars\ngood,5\nbad,1\nfine,3\n")
    cache = {"cache_dir": tmp_path / "cache"}
    (from_disk,) = tasks_from_source(
        saved, ColumnMapping(input="sentence", label="label"), splits={"train": "train"}
    )
    assert from_disk.name == "saved" and len(from_disk.train) == 40
    (qa,) = tasks_from_source(jsonl, ColumnMapping(input="q", target="a"), carve=Carve(2, 2), **cache)
    assert qa.name == "qa" and qa.kind == "text2text" and qa.train[0].target == "a0"  # first reference
    assert (len(qa.train), len(qa.dev), len(qa.test)) == (2, 2, 2)
    choices = ("1", "2", "3", "4", "5")
    # csv gives integers, and an integer label is an index: 5 stars is out of range for 5 options
    with pytest.raises(MappingError, match="label 5 is out of range for 5 options"):
        tasks_from_source(csv, ColumnMapping(input="text", label="stars", choices=choices), **cache)
    texts = tmp_path / "sentiment.csv"
    texts.write_text("text,sentiment\ngood,pos\nbad,neg\n")
    (sentiment,) = tasks_from_source(
        texts, ColumnMapping(input="text", label="sentiment", choices=("neg", "pos")), **cache
    )
    assert [e.label for e in sentiment.train] == [1, 0]
    data_dir = tmp_path / "folder"
    data_dir.mkdir()
    (data_dir / "train.jsonl").write_text('{"t": "one"}\n{"t": "two"}\n')
    (data_dir / "test.jsonl").write_text('{"t": "three"}\n')
    (lm,) = tasks_from_source(data_dir, ColumnMapping(text="t"), **cache)
    assert lm.kind == "lm" and (len(lm.train), len(lm.test)) == (2, 1)


@pytest.mark.parametrize(
    ("mapping", "kw", "message"),
    [
        (dict(input="sentense", label="label"), {}, "no column 'sentense'"),
        (dict(input="sentence", label="sentence"), {}, "not a ClassLabel"),
        (dict(input="sentence", label="label"), {"max_examples": 0}, "max_examples must be"),
        (
            dict(input="sentence", label="label", task="task"),
            {"keep_tasks": ["gamma"]},
            "no rows were mapped",
        ),
        (dict(input="sentence", label="label"), {"splits": {"validation": "dev"}}, "no training examples"),
    ],
)
def test_bad_mappings_fail_with_one_sentence(dataset_dict, mapping, kw, message):
    with pytest.raises(MappingError, match=message) as err:
        tasks_from_source(
            dataset_dict, ColumnMapping(**mapping), name="t", splits=kw.pop("splits", None), **kw
        )
    assert "\n" not in str(err.value)


def test_mapping_must_name_one_kind():
    with pytest.raises(MappingError, match="exactly one example kind"):
        ColumnMapping(input="a", label="b", target="c")
    with pytest.raises(MappingError, match="needs the input column"):
        ColumnMapping(target="c")
    with pytest.raises(MappingError, match="at least 2 option texts"):
        ColumnMapping(input="a", label="b", choices=("only",))


def test_string_labels_and_duplicate_names(dataset_dict):
    ds = datasets.Dataset.from_dict({"x": ["a", "b"], "y": ["yes", "no"]})
    (task,) = tasks_from_source(ds, ColumnMapping(input="x", label="y", choices=("no", "yes")), name="yn")
    assert [e.label for e in task.train] == [1, 0]
    with pytest.raises(MappingError, match="is not one of the options"):
        tasks_from_source(ds, ColumnMapping(input="x", label="y", choices=("maybe", "no")), name="yn")
    with pytest.raises(MappingError, match="two sources give a task named 'yn'"):
        tasks_from_datasets([("yn", ds), ("yn", ds)], ColumnMapping(input="x", target="y"))


def test_written_collection_is_claimed_and_foreign_folders_refused(tmp_path, dataset_dict):
    mapping = ColumnMapping(input="sentence", label="label", task="task")
    out, _ = write_tasks_from_datasets([dataset_dict["train"]], mapping, tmp_path / "tasks", max_examples=4)
    assert [t.name for t in read_task_collection(out)] == ["alpha", "beta"]
    manifest = json.loads((out / "tasks.json").read_text())
    assert manifest["tasks"]["alpha"]["train"] == 4 and manifest["mapping"]["task"] == "task"
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="holds no liftpeft task collection"):
        write_tasks_from_datasets([dataset_dict["train"]], mapping, foreign)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    with pytest.raises(ValueError, match="--overwrite"):
        write_tasks_from_datasets([dataset_dict["train"]], mapping, out)
    mapping_one = ColumnMapping(input="sentence", label="label")
    write_tasks_from_datasets([("only", dataset_dict["train"])], mapping_one, out, overwrite=True)
    assert [t.name for t in read_task_collection(out)] == ["only"]  # old task folders are gone


def test_a_failed_mapping_leaves_no_output(tmp_path, dataset_dict):
    with pytest.raises(MappingError):
        write_tasks_from_datasets([dataset_dict], ColumnMapping(input="nope", label="label"), tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_cli_from_datasets(tmp_path, dataset_dict, capsys):
    saved = tmp_path / "saved"
    dataset_dict["train"].save_to_disk(str(saved))
    out = tmp_path / "tasks"
    argv = ["tasks", "from-datasets", f"reviews={saved}", "--input", "sentence", "--label", "label"]
    assert main([*argv, "--train-size", "8", "--dev-size", "4", "--out", str(out)]) == 0
    assert "1 choice task(s) written" in capsys.readouterr().out
    (task,) = read_task_collection(out)
    assert task.name == "reviews" and (len(task.train), len(task.dev), len(task.test)) == (8, 4, 28)
    assert main([*argv, "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (
        main(["tasks", "from-datasets", str(saved), "--input", "sentence", "--out", str(tmp_path / "x")]) == 1
    )
    assert "exactly one example kind" in capsys.readouterr().err


def test_cli_splits_flag(tmp_path, dataset_dict, capsys):
    saved = tmp_path / "saved"
    dataset_dict.save_to_disk(str(saved))
    out = tmp_path / "tasks"
    argv = ["tasks", "from-datasets", str(saved), "--input", "sentence", "--label", "label"]
    assert main([*argv, "--splits", "train=train,validation=test", "--out", str(out)]) == 0
    (task,) = read_task_collection(out)
    assert (len(task.train), len(task.dev), len(task.test)) == (40, 0, 8)
    assert main([*argv, "--splits", "train", "--out", str(tmp_path / "x")]) == 2
    assert "SOURCE=TASK_SPLIT" in capsys.readouterr().err


def test_a_hub_id_offline_and_a_missing_datasets_say_what_to_do(monkeypatch):
    from liftpeft.tasks.hf_sources import SourceError, open_source

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(
        SourceError, match=r"could not load dataset 'someone/no-such-set' from the hub: the hub is"
    ):
        open_source("someone/no-such-set")
    monkeypatch.setitem(__import__("sys").modules, "datasets", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'liftpeft\[hub\]'"):
        open_source("anything")
