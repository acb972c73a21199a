import json

import pytest
import yaml

from liftpeft.bench import build_benchmark, load_bench_config, run_bench
from liftpeft.evaluation.report import write_report
from liftpeft.evaluation.stats import read_rows, summarize

TINY_METHODS = {
    "lift": dict(
        k=2,
        extra_k=[1],
        sigma=1.0,
        beta=1.0,
        tau=1e-3,
        step_size=1e-2,
        warmup_lr=1e-2,
        steps=40,
        warmup_steps=20,
        burnin_steps=10,
        thin=2,
        batch_size=4,
        adapt_steps=3,
        adapt_batch_size=4,
    ),
    "no-meta": dict(adapt_steps=3, adapt_lr=1e-2, adapt_batch_size=4),
    "union": dict(
        meta_steps=20, meta_lr=1e-2, meta_batch_size=4, adapt_steps=3, adapt_lr=1e-2, adapt_batch_size=4
    ),
}


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory, monkeypatch_module=None):
    import os

    os.environ["LIFTPEFT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    return {
        "benchmark": "rule-family",
        "settings": {"n_train_tasks": 4, "n_dev_tasks": 1, "n_test_tasks": 3, "max_length": 24},
        "methods": TINY_METHODS,
        "variants": {"lift-sb0.5": {"method": "lift", "sigma": 0.5, "beta": 0.5, "extra_k": []}},
        "default_methods": ["lift", "no-meta", "union"],
        "reference": "lift",
    }


def test_grid_rows_resume_and_report(tiny_config, tmp_path, capsys, monkeypatch):
    from liftpeft import progress

    monkeypatch.setattr(progress, "_QUIET", False)
    monkeypatch.delenv("LIFTPEFT_QUIET", raising=False)
    data = build_benchmark("rule-family", tiny_config["settings"])
    out = tmp_path / "run"
    results = run_bench(tiny_config, None, [0, 1], out, data=data)
    # a log (stderr is no terminal here) gets a line as each cell starts and ends
    log = capsys.readouterr().err
    assert "bench rule-family [1/6] lift seed 0: meta-training, then 3 test tasks" in log
    assert "[6/6] union seed 1: done" in log
    rows = read_rows(results)
    methods = {r["method"] for r in rows}
    assert methods == {"lift", "lift-k1", "no-meta", "union"}
    assert len(rows) == 4 * 2 * 3  # (methods incl. the K=1 sibling) x seeds x test tasks
    row = rows[0]
    for key in ("metrics", "seed", "task", "adapt_steps", "adapt_seconds", "meta_train_seconds", "config"):
        assert key in row
    assert 0.0 <= row["metrics"]["accuracy"] <= 1.0
    # resume: a rerun adds nothing; removing rows makes the rerun fill exactly those
    run_bench(tiny_config, None, [0, 1], out, data=data)
    assert len(read_rows(results)) == 24
    assert "meta-training" not in capsys.readouterr().err  # nothing left to run: no cell lines
    state_files = sorted((out / "states").glob("*/*"))
    stamps = {p: p.stat().st_mtime_ns for p in state_files}
    lift_rows = [r for r in read_rows(results) if r["method"] == "lift"]
    kept = [ln for ln in results.read_text().splitlines() if json.loads(ln)["method"] != "union"]
    results.write_text("\n".join(kept) + "\n")
    run_bench(tiny_config, None, [0, 1], out, data=data)
    again = read_rows(results)
    assert len(again) == 24 and sum(r["method"] == "union" for r in again) == 6
    # the saved meta-trained states were reused, not retrained: no state file rewritten, lift rows kept
    assert len(list((out / "states").glob("lift-*-seed0/prior.json"))) == 1
    assert {p: p.stat().st_mtime_ns for p in sorted((out / "states").glob("*/*"))} == stamps
    assert [r for r in again if r["method"] == "lift"] == lift_rows
    summaries = summarize(again)
    assert summaries[0].method == "lift" and summaries[1].p_tasks is not None
    report = write_report(out)
    text = report.read_text()
    assert "| **lift** |" in text and "K sweep" in text
    assert (out / "methods.png").stat().st_size > 0 and (out / "per_task.png").stat().st_size > 0


def test_sigma_sweep_variant_and_dev_split(tiny_config, tmp_path):
    data = build_benchmark("rule-family", tiny_config["settings"])
    run_bench(tiny_config, ["lift", "lift-sb0.5"], [0], tmp_path, split="dev", data=data)
    rows = read_rows(tmp_path)
    assert {r["split"] for r in rows} == {"dev"} and {r["method"] for r in rows} >= {"lift", "lift-sb0.5"}
    text = write_report(tmp_path).read_text()
    assert "sigma = beta sweep" in text


def test_shipped_configs_are_valid():
    for name in ("rule-family", "shakespeare", "bigbench-cls"):
        config = load_bench_config(name)
        assert config["benchmark"] == name


def test_config_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"benchmark": "rule-family", "methods": {"lift": {"nope": 1}}}))
    with pytest.raises(ValueError, match="no setting"):
        load_bench_config(bad)
    bad.write_text(yaml.safe_dump({"benchmark": "nope"}))
    with pytest.raises(ValueError, match="unknown benchmark"):
        load_bench_config(bad)
    with pytest.raises(KeyError, match="unknown benchmark"):
        load_bench_config("not-a-benchmark")


def test_cli_first_seed_runs_a_slice_of_the_grid(tiny_config, tmp_path):
    from liftpeft.cli.main import main

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config))
    out = tmp_path / "slice"
    args = ["bench", "--config", str(config), "--methods", "no-meta", "--out", str(out), "--quiet"]
    assert main([*args, "--seeds", "1", "--first-seed", "2"]) == 0
    rows = read_rows(out / "results.jsonl")
    assert {r["seed"] for r in rows} == {2} and len(rows) == 3
    assert main([*args, "--first-seed", "-1"]) == 2
    # a second command adding seed 0 to the same directory keeps the first command in the history
    assert main([*args, "--seeds", "1"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert len(run["commands"]) == 2 and "--first-seed 2" in run["commands"][0]
    assert {r["seed"] for r in read_rows(out / "results.jsonl")} == {0, 2}
    report = (out / "report.md").read_text()
    assert "Commands (in the order they ran):" in report and "--first-seed 2" in report


def test_defaults_apply_to_methods_that_have_the_field(tmp_path):
    from liftpeft.bench.runner import resolve_method

    config = {
        "benchmark": "rule-family",
        "defaults": {"adapt_steps": 7, "meta_steps": 11, "sigma": 0.5},
        "methods": {"maml": {"meta_steps": 13}},
        "variants": {"maml-n3": {"method": "maml", "inner_steps": 3}},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    loaded = load_bench_config(path)
    # no-meta has adapt_steps but neither meta_steps nor sigma: only the field it has is applied
    assert resolve_method(loaded, "no-meta") == ("no-meta", {"adapt_steps": 7})
    # the method's own entry wins over defaults; a variant layers on top of both
    assert resolve_method(loaded, "maml")[1] == {"adapt_steps": 7, "meta_steps": 13}
    assert resolve_method(loaded, "maml-n3")[1] == {"adapt_steps": 7, "meta_steps": 13, "inner_steps": 3}
    assert resolve_method(loaded, "taskwise-bayes")[1] == {"adapt_steps": 7, "sigma": 0.5}
    path.write_text(yaml.safe_dump({"benchmark": "rule-family", "defaults": {"adapt_stpes": 7}}))
    with pytest.raises(ValueError, match="adapt_stpes"):
        load_bench_config(path)


def test_a_key_given_twice_is_refused(tmp_path):
    from liftpeft.config_files import ConfigFileError

    path = tmp_path / "twice.yaml"
    path.write_text("benchmark: rule-family\nmethods:\n  lift: {k: 2}\nmethods:\n  maml: {}\n")
    with pytest.raises(ConfigFileError, match="'methods' appears twice"):
        load_bench_config(path)


def test_method_cost_rows_and_report_tables(tiny_config, tmp_path):
    from liftpeft.bench.cost import measure_method_cost

    config = {
        **tiny_config,
        "methods": {**TINY_METHODS, "maml": dict(meta_steps=4, meta_batch_size=4, adapt_steps=2)},
        "variants": {"maml-n2": {"method": "maml", "inner_steps": 2}},
    }
    data = build_benchmark("rule-family", config["settings"])
    costs = {}
    for name in ("lift", "maml", "maml-n2", "no-meta"):
        costs[name] = measure_method_cost(config, name, data, steps=(3, 6), adapt_steps=(1, 3), reps=1)
    multi = measure_method_cost(
        config, "multilora", data, steps=(2, 4), adapt_steps=(1, 2), reps=1, max_tasks=2
    )
    assert (
        multi["unit"] == "per-task adapter step" and multi["timed_tasks"] == 2 and multi["n_train_tasks"] == 4
    )
    lift, maml2, plain = costs["lift"], costs["maml-n2"], costs["no-meta"]
    assert lift["timed_tasks"] == 4
    # times at this scale are milliseconds: differences are noisy (clipped at 0; a ratio over a plain step
    # that read 0 is None), so only their presence is checked
    assert (
        lift["unit"] == "SGLD-Gibbs step"
        and isinstance(lift["meta_iteration_seconds"], float)
        and "meta_ratio" in lift
    )
    assert maml2["unit"] == "outer update" and maml2["base_method"] == "maml"
    assert plain["unit"] is None and plain["meta_ratio"] is None and plain["adapt_step_seconds"] >= 0
    assert lift["n_train_tasks"] == 4 and lift["dim"] == data.problem.dim
    run_bench(config, ["lift", "no-meta", "maml", "maml-n2"], [0], tmp_path, data=data)
    (tmp_path / "cost.jsonl").write_text("".join(json.dumps(c) + "\n" for c in costs.values()))
    text = write_report(tmp_path).read_text()
    assert "## MAML inner steps" in text and "## Cost per iteration" in text
    assert "| 2 | maml-n2 |" in text and "## Methods by family" in text and "### meta-learning" in text
    assert f"N = 4 task adapters of d = {data.problem.dim}" in text


def test_merge_split_grid_equals_one_run(tiny_config, tmp_path):
    from liftpeft.bench.merge import merge_results
    from liftpeft.cli.main import main

    data = build_benchmark("rule-family", tiny_config["settings"])
    run_bench(tiny_config, ["no-meta", "union"], [0], tmp_path / "a", data=data, command="cmd a")
    run_bench(tiny_config, ["no-meta", "union"], [1], tmp_path / "b", data=data, command="cmd b")
    run_bench(tiny_config, ["no-meta"], [1], tmp_path / "c", data=data, command="cmd c")  # overlaps b
    (tmp_path / "a" / "cost.jsonl").write_text('{"method": "union", "meta_iteration_seconds": 0.5}\n')
    (tmp_path / "b" / "cost.jsonl").write_text('{"method": "union", "meta_iteration_seconds": 9.0}\n')
    added = merge_results([tmp_path / "a", tmp_path / "b", tmp_path / "c"], tmp_path / "all")
    # the cost table comes along (the first source's row of a method wins)
    costs = [json.loads(line) for line in (tmp_path / "all" / "cost.jsonl").read_text().splitlines()]
    assert costs == [{"method": "union", "meta_iteration_seconds": 0.5}]
    rows = read_rows(tmp_path / "all")
    assert added["rows"] == len(rows) == 2 * 2 * 3  # methods x seeds x tasks, the overlap counted once
    keys = {(r["method"], r["seed"], r["task"]) for r in rows}
    assert len(keys) == len(rows)
    run = json.loads((tmp_path / "all" / "run.json").read_text())
    assert run["commands"] == ["cmd a", "cmd b", "cmd c"] and run["seeds"] == [0, 1]
    assert len(list((tmp_path / "all" / "states").glob("union-*-seed*"))) == 2
    # merging again adds nothing; a run of the merged directory resumes without new rows
    assert merge_results([tmp_path / "a"], tmp_path / "all")["rows"] == 0
    run_bench(tiny_config, ["no-meta", "union"], [0, 1], tmp_path / "all", data=data)
    assert len(read_rows(tmp_path / "all")) == 12
    # another split is refused, with a message naming both
    run_bench(tiny_config, ["no-meta"], [0], tmp_path / "dev", split="dev", data=data)
    with pytest.raises(ValueError, match="one benchmark and split"):
        merge_results([tmp_path / "dev"], tmp_path / "all")
    assert main(["bench", "--merge", str(tmp_path / "b"), "--out", str(tmp_path / "cli")]) == 0
    assert len(read_rows(tmp_path / "cli")) == 6 and (tmp_path / "cli" / "report.md").is_file()
