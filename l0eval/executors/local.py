"""The local executor: one family at a time in this process (the default; needs no Ray)."""

from __future__ import annotations

import time

from l0eval.downstream.suite import DownstreamConfig
from l0eval.family.registry import SAEFamily
from l0eval.family.synthetic_spec import SyntheticFamilySpec
from l0eval.family.toy_spec import FamilySpec


def run_family(family: FamilySpec | SAEFamily | SyntheticFamilySpec, device: str = "cpu", progress: bool = True,
               downstream: DownstreamConfig | None = None) -> dict:
    """Train/evaluate a toy family, or evaluate an existing SAE family (with the ``downstream`` metrics it
    asks for, default all), and apply every selector."""
    started = time.monotonic()
    if isinstance(family, SyntheticFamilySpec):
        from l0eval.runs.synthetic import run_synthetic_family

        results = run_synthetic_family(family, device=device, progress=progress)
    elif isinstance(family, FamilySpec):
        from l0eval.runs.toy import run_family as run_toy_family

        results = run_toy_family(family, device=device, progress=progress)
    else:
        from l0eval.runs.saes import run_sae_family

        results = run_sae_family(family, device=device, progress=progress, downstream=downstream)
    results["run"]["wall_seconds"] = time.monotonic() - started
    return results
