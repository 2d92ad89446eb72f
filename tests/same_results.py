"""Comparing two runs' results made in different processes (local vs Ray workers, killed vs clean).

Every process of a run pins one torch thread count (``l0eval.torch_threads``), so on one machine the
numbers agree exactly; on another CPU or BLAS build a float may still differ in its last digits. So
what must be identical is compared exactly: keys, list lengths, strings, integers, booleans, None,
the members' nominal L0s and the selectors' choices (``chosen_l0``, ``replicate_choices``); every other float within
REL_TOL (relative) or ABS_TOL (absolute, for values near 0).
"""

import math

from l0eval.executors.records import without_timing_and_host

REL_TOL, ABS_TOL = 1e-4, 1e-6
EXACT_FLOAT_KEYS = frozenset({"chosen_l0", "replicate_choices", "nominal_l0"})


def differences(a, b, where: str = "", exact: bool = False) -> list[str]:
    """Where ``a`` and ``b`` differ beyond the stated tolerance ('' paths for the top level)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where}: keys {sorted(a.keys() ^ b.keys())} in one only"]
        return [line for key in a for line in differences(a[key], b[key], f"{where}.{key}",
                                                           exact or key in EXACT_FLOAT_KEYS)]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} vs {len(b)} items"]
        return [line for i, (x, y) in enumerate(zip(a, b)) for line in differences(x, y, f"{where}[{i}]", exact)]
    if isinstance(a, float) and isinstance(b, float) and not exact:
        return [] if math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL) else [f"{where}: {a!r} vs {b!r}"]
    return [] if type(a) is type(b) and a == b else [f"{where}: {a!r} vs {b!r}"]


def assert_same_results(a: dict, b: dict, name: str = "") -> None:
    """``a`` and ``b`` agree on everything but timing and host fields, floats within the tolerance."""
    found = differences(without_timing_and_host(a), without_timing_and_host(b))
    assert not found, f"{name}: {len(found)} differences, first: {found[:5]}"
