"""Benchmark data: source packages fetched into the cache and turned into task collections."""
