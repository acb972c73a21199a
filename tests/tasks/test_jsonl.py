import json

import pytest

from liftpeft.tasks import (
    ChoiceExample,
    Task,
    TaskFormatError,
    TextExample,
    read_task,
    read_task_collection,
    write_task_collection,
)


def write(folder, name, lines):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(
        "".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines)
    )


def test_round_trip(tmp_path):
    tasks = [
        Task(
            "mc",
            "choice",
            [ChoiceExample("q?", ("a", "b"), 1)],
            test=[ChoiceExample("r?", ("x", "y", "z"), 2)],
        ),
        Task("lm", "lm", [TextExample("hello")], dev=[TextExample("world")]),
    ]
    write_task_collection(tasks, tmp_path)
    back = read_task_collection(tmp_path)
    assert [t.name for t in back] == ["lm", "mc"]
    assert back[1] == tasks[0] and back[0] == tasks[1]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "invalid JSON"),
        ({"input": "q", "options": ["a", "b"]}, "missing \\['label'\\]"),
        ({"input": "q", "options": ["a", "b"], "label": 2}, "label 2 is out of range for 2 options"),
        ({"input": "q", "options": ["a"], "label": 0}, "at least 2 options"),
        ({"input": "q", "options": "ab", "label": 0}, "'options' must be a list of strings"),
        ({"input": "q", "options": ["a", "b"], "label": "0"}, "'label' must be an integer"),
        ({"prompt": "q"}, "unrecognised example"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, line, message):
    good = {"input": "fine", "options": ["a", "b"], "label": 0}
    write(tmp_path / "t", "train.jsonl", [good, "", line])
    with pytest.raises(TaskFormatError, match=rf"train\.jsonl:3: .*{message}"):
        read_task(tmp_path / "t")


def test_mixed_kinds_and_empty_tasks_are_refused(tmp_path):
    write(tmp_path / "mixed", "train.jsonl", [{"text": "a"}, {"input": "b", "target": "c"}])
    with pytest.raises(TaskFormatError, match=r"train\.jsonl:2: .*one file holds one kind"):
        read_task(tmp_path / "mixed")
    write(tmp_path / "empty", "train.jsonl", [""])
    with pytest.raises(TaskFormatError, match="no examples"):
        read_task(tmp_path / "empty")
    (tmp_path / "nofile").mkdir()
    with pytest.raises(TaskFormatError, match=r"no train\.jsonl"):
        read_task(tmp_path / "nofile")
    write(tmp_path / "split", "train.jsonl", [{"text": "a"}])
    write(tmp_path / "split", "test.jsonl", [{"input": "b", "target": "c"}])
    with pytest.raises(TaskFormatError, match="different example kinds"):
        read_task(tmp_path / "split")
    with pytest.raises(TaskFormatError, match="no task folders"):
        read_task_collection(tmp_path / "nofile")
