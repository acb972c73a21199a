"""Benchmark data: fetching source packages into the cache and turning them into task collections."""
