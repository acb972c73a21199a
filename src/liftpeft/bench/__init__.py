"""Benchmarks: definitions (what tasks, which backbone), the method x seed grid runner, and configs."""

from liftpeft.bench import paper as _paper  # noqa: F401  (registers crossfit-* and vtab-1k)
from liftpeft.bench.benchmarks import BenchmarkData, available_benchmarks, build_benchmark
from liftpeft.bench.runner import load_bench_config, run_bench

__all__ = ["BenchmarkData", "available_benchmarks", "build_benchmark", "load_bench_config", "run_bench"]
