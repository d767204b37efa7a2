"""Durations as the vendors' samples write them: ``120m``, ``2h``, ``3600``."""

from __future__ import annotations

import re

from tokens.errors import PolicyError

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d{1,9})\s*([smhd]?)\s*$", re.IGNORECASE)


def parse_duration(value: str | int) -> int:
    """Seconds in ``value``: an integer, or digits with ``s``, ``m``, ``h`` or ``d``."""
    if isinstance(value, bool):
        raise PolicyError(f"{value!r} is not a duration")
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION.match(value) if isinstance(value, str) else None
        if match is None:
            raise PolicyError(f"{value!r} is not a duration (use e.g. 3600, 120m, 2h)")
        seconds = int(match.group(1)) * _UNITS[match.group(2).lower()]
    if seconds <= 0:
        raise PolicyError(f"duration {value!r} must be positive")
    return seconds
