"""Benchmarks printing throughput figures (make bench)."""
