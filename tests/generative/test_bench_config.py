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
