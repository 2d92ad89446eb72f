"""The local executor: one family at a time in this process (the default; needs no Ray)."""

from __future__ import annotations

import time

from l0eval.downstream.suite import DownstreamConfig
from l0eval.family.model import EvaluationJob, Family
from l0eval.results import run_header


def run_family(family: Family, device: str = "cpu", progress: bool = True,
               downstream: DownstreamConfig | None = None) -> dict:
    """Obtain the family's SAEs (train or load), evaluate them on its activations (with the ``downstream``
    metrics it asks for, default all) and apply every selector."""
    started = time.monotonic()
    job = EvaluationJob(device=device, progress=progress, downstream=downstream or DownstreamConfig(),
                        header=run_header(device))
    results = family.evaluate(job)
    results["run"]["wall_seconds"] = time.monotonic() - started
    return results
