"""The shipped bigbench-gen config: valid, and its task rules are BigBenchGenConfig's defaults."""

from __future__ import annotations


def test_shipped_config_is_valid_and_states_the_default_rules():
    from liftpeft.bench.benchmarks import available_benchmarks
    from liftpeft.bench.runner import load_bench_config
    from liftpeft.data.bigbench_gen import BigBenchGenConfig

    assert "bigbench-gen" in available_benchmarks()
    config = load_bench_config("bigbench-gen")
    rules = BigBenchGenConfig.from_value(config["settings"]["data"])
    assert rules == BigBenchGenConfig()  # `liftpeft data fetch bigbench-gen` caches what bench uses
    assert config["settings"]["prefix_cache"] is True


def test_the_meta_dev_tuning_config_is_valid():
    from pathlib import Path

    from liftpeft.bench.runner import load_bench_config

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "tuning" / "bigbench-gen-dev.yaml"
    config = load_bench_config(path)
    assert config["settings"]["max_dev_tasks_per_family"] == 2 and "zero-shot" in config["variants"]
