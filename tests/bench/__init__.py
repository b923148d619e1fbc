"""The benchmarks still run, at their smallest size."""
