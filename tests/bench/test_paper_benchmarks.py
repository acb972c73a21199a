"""The paper's benchmarks run end to end through the grid runner on fixtures and tiny random models."""

import json

import pytest

from liftpeft.bench import load_bench_config, run_bench
from liftpeft.bench.runner import validate_bench_config
from liftpeft.peft_integration.tiny import make_tiny_model
from tests.paper_fixtures import VTAB_DATASETS, write_crossfit, write_vtab

SMALL = {
    "lift": {
        "steps": 6,
        "warmup_steps": 2,
        "burnin_steps": 2,
        "thin": 1,
        "batch_size": 4,
        "k": 1,
        "extra_k": [],
    },
    "no-meta": {"adapt_steps": 2, "adapt_batch_size": 4},
}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("benchmark", ["crossfit-bart", "crossfit-flan-t5", "vtab-1k"])
def test_grid_rows_on_fixtures(benchmark, tmp_path, one_thread):
    if benchmark == "vtab-1k":
        pytest.importorskip("PIL")
        model = make_tiny_model("vit", tmp_path / "vit")
        settings = {"root": str(write_vtab(tmp_path / "vtab-1k")), "datasets": list(VTAB_DATASETS)}
        settings.update(image_size=24, eval_batch_size=8)
    else:
        model = make_tiny_model("bart" if benchmark == "crossfit-bart" else "t5", tmp_path / "model")
        root = write_crossfit(tmp_path / "crossfit")
        settings = {"root": str(root), "split": str(root / "split.json"), "max_length": 64}
    config = load_bench_config(benchmark)
    config["settings"].update(settings, model=str(model), device="cpu")
    for method, small in SMALL.items():
        config["methods"][method] = {**config["methods"].get(method, {}), **small, "adapt_steps": 2}
    validate_bench_config(config)
    results = run_bench(config, ["lift", "no-meta"], [0], tmp_path / "out")
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    test_task = "dtd" if benchmark == "vtab-1k" else "superglue-cb"
    assert {(r["method"], r["task"]) for r in rows} == {("lift", test_task), ("no-meta", test_task)}
    metric = "accuracy" if benchmark == "vtab-1k" else "token_accuracy"
    assert all(0.0 <= r["metrics"][metric] <= 1.0 for r in rows)
