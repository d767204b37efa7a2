"""Benchmarks a user can run: each bounded in time, loopback only (see docs/benchmarks.md)."""
