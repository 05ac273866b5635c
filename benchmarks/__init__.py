"""Benchmarks run by ``continuity-studio bench NAME``; each module has ``run(argv) -> dict``."""
