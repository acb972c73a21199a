"""A bench rerun loads every method's saved state instead of meta-training again."""

import pytest

from liftpeft.bench import build_benchmark, run_bench
from liftpeft.evaluation.stats import read_rows
from liftpeft.methods import available_methods

from .test_end_to_end import TINY


def test_rerun_loads_every_methods_state(tmp_path, monkeypatch):
    monkeypatch.setenv("LIFTPEFT_CACHE", str(tmp_path / "cache"))
    # the retrievers' tiny settings hold an embedder function, which run.json cannot record
    names = [n for n in sorted(available_methods()) if not n.startswith("retriever")]
    config = {
        "benchmark": "rule-family",
        "settings": {"n_train_tasks": 4, "n_dev_tasks": 1, "n_test_tasks": 1, "max_length": 24},
        "methods": {name: dict(TINY[name]) for name in names},
        "variants": {},
        "defaults": {},
        "default_methods": names,
        "reference": "lift",
    }
    for settings in config["methods"].values():  # 4 training tasks: zoo sizes must fit
        for key in ("k", "n_clusters"):
            if key in settings:
                settings[key] = min(settings[key], 2)
    data = build_benchmark("rule-family", config["settings"])
    out = tmp_path / "run"
    first = read_rows(run_bench(config, None, [0], out, data=data))
    (out / "results.jsonl").unlink()  # every row is pending again; the states stay

    def no_meta_training(self, *args, **kwargs):
        raise AssertionError(f"{self.name} meta-trained again instead of loading its saved state")

    for info in available_methods().values():
        monkeypatch.setattr(info.factory, "meta_train", no_meta_training)
    again = read_rows(run_bench(config, None, [0], out, data=data))
    key = lambda r: (r["method"], r["task"])  # noqa: E731
    assert sorted(map(key, again)) == sorted(map(key, first))
    by_key = {key(r): r["metrics"] for r in first}
    for row in again:
        assert row["metrics"] == pytest.approx(by_key[key(row)]), row["method"]
