"""Strict parsing helpers for spec files: every check names the key path ("training.samples")."""

from __future__ import annotations

import difflib
import math
from typing import Any

from l0eval.errors import SpecError


def check_keys(mapping: Any, allowed: set[str], where: str, required: set[str] = frozenset()) -> dict:
    if not isinstance(mapping, dict):
        raise SpecError(f"{where or 'spec'} must be a mapping, got {type(mapping).__name__}")
    for key in mapping:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else f" (allowed: {', '.join(sorted(allowed))})"
            raise SpecError(f"unknown key '{_join(where, key)}'{suggestion}")
    for key in required:
        if key not in mapping:
            raise SpecError(f"missing required key '{_join(where, key)}'")
    return mapping


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def number(value: Any, where: str, *, integer: bool = False, low: float | None = None,
           high: float | None = None, low_open: bool = False) -> Any:
    ok_types = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_types):
        raise SpecError(f"'{where}' must be {'an integer' if integer else 'a number'}, got {value!r}")
    if not math.isfinite(value):  # NaN passes every bound check below (its comparisons are all false)
        raise SpecError(f"'{where}' must be a finite number, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        raise SpecError(f"'{where}' must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and value > high:
        raise SpecError(f"'{where}' must be <= {high}, got {value!r}")
    return value


def number_list(value: Any, where: str, **bounds: Any) -> tuple:
    if not isinstance(value, list) or not value:
        raise SpecError(f"'{where}' must be a non-empty list, got {value!r}")
    return tuple(number(item, f"{where}[{i}]", **bounds) for i, item in enumerate(value))
