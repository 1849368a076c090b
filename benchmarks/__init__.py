"""Benchmarks (not part of the test suite): `python -m benchmarks` or `benchmarks/run.sh`."""
