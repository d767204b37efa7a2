"""How many generated cases each fuzz test ran; ``tests/conftest.py`` prints them."""

from __future__ import annotations

from collections import Counter

CASES: Counter[str] = Counter()


def record(name: str) -> None:
    """Count one generated case of the fuzz test ``name``."""
    CASES[name] += 1
