"""anypod's benchmarks: a small harness (``benchmarks.harness``) and one script per claim.

Run from the repository root, e.g. ``python -m benchmarks.throughput --quick``.
"""
