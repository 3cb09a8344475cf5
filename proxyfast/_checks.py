"""Argument checks shared by the public functions: one wording for one mistake."""

from __future__ import annotations

import numbers
from typing import Any

__all__ = ["check_int"]


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int; TypeError unless it is an integer (bools are not), ValueError
    when it is below ``minimum``. ``name`` is the argument's name in the message."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)
