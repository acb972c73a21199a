import json

import pytest

from liftpeft import api
from liftpeft.cli.main import main
from liftpeft.data.synthetic import write_rule_family
from liftpeft.peft_integration.tiny import make_tiny_model


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    make_tiny_model("bert", root / "model")
    write_rule_family(root / "tasks", n_tasks=4, n_test_tasks=1)
    return root


def test_methods_lists_the_registry(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "lift " in out and "no-meta" in out and "union" in out


def test_meta_train_adapt_evaluate_round_trip(workspace, capsys):
    w = workspace
    assert (
        main(
            [
                "meta-train",
                "--model",
                str(w / "model"),
                "--tasks",
                str(w / "tasks" / "train"),
                "--out",
                str(w / "prior"),
                "--k",
                "1",
                "--steps",
                "30",
                "--quiet",
                "--set",
                "warmup_steps=10",
                "--set",
                "burnin_steps=5",
                "--set",
                "sigma=1",
                "--set",
                "beta=1",
            ]
        )
        == 0
    )
    assert (w / "prior" / "prior.json").is_file() and (w / "prior" / "method.json").is_file()
    task = str(w / "tasks" / "test" / "task-000")
    assert (
        main(
            [
                "adapt",
                "--prior",
                str(w / "prior"),
                "--task",
                task,
                "--out",
                str(w / "adapter"),
                "--steps",
                "3",
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(w / "model"),
                "--adapter",
                str(w / "adapter"),
                "--task",
                task,
                "--json",
            ]
        )
        == 0
    )
    metrics = json.loads(capsys.readouterr().out)
    # the CLI prints exactly what the library computes for that adapter, which is not the untrained one
    assert metrics == pytest.approx(api.evaluate(w / "model", task, adapter=w / "adapter"), abs=1e-12)
    assert metrics["n"] > 0 and metrics["loss"] != pytest.approx(api.evaluate(w / "model", task)["loss"])


def test_config_file_with_flag_override(workspace, tmp_path):
    w = workspace
    config = tmp_path / "mt.toml"
    config.write_text(
        f'model = "{w / "model"}"\ntasks = "{w / "tasks" / "train"}"\nk = 3\nsteps = 25\n'
        "warmup_steps = 5\nburnin_steps = 5\nsigma = 1.0\nbeta = 1.0\n"
    )
    assert (
        main(["meta-train", "--config", str(config), "--out", str(tmp_path / "p"), "--k", "1", "--quiet"])
        == 0
    )
    saved = json.loads((tmp_path / "p" / "prior.json").read_text())
    assert saved["n_components"] == 1 and saved["config"]["steps"] == 25


def test_errors_are_one_line_with_exit_codes(workspace, capsys):
    assert main(["adapt", "--prior", str(workspace / "prior")]) == 2
    assert "missing --task, --out" in capsys.readouterr().err
    assert (
        main(
            ["evaluate", "--model", "no-such/model", "--task", str(workspace / "tasks" / "test" / "task-000")]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "local model directory" in err and "Traceback" not in err
    assert main(["adapt", "--prior", str(workspace), "--task", "x", "--out", "y"]) == 1
    assert "holds no meta-trained artefact" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["meta-train", "--k", "notanumber"])
    assert exc.value.code == 2
