"""Units of work for a distributed run, sized by memory.

A unit is a whole family (the SAEs of a toy or synthetic-world family train together; a family on in-memory
activations scores them on one batch) or, when the family's activation source loads a model (an LLM), one shard of its
members: the shard loads the model once and streams each activation batch through all of its SAEs
(``l0eval.runs.llm``); shards are cut so that model + SAEs fit one device's memory. Activations never
travel between machines: a unit reads the on-disk activation cache of its node
(``$L0EVAL_CACHE/activations``) or fills it, once per node, under a file lock.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from l0eval import cpu_memory, torch_threads
from l0eval.downstream.suite import DownstreamConfig
from l0eval.executors.local import run_family
from l0eval.family.model import Family


@dataclass(frozen=True)
class Unit:
    """One task: ``family`` holds only this unit's members (a whole family, or a shard)."""

    family: Family
    member_ids: tuple[str, ...]
    shard: int
    n_shards: int
    estimated_bytes: int  # model + SAEs + one batch of SAE activations
    tokens: int  # inputs streamed through each SAE (LLM tokens or toy samples)

    @property
    def name(self) -> str:
        return f"{self.family.name}[{self.shard + 1}/{self.n_shards}]"


def plan_units(family: Family, missing: list[str], budget_bytes: int) -> list[Unit]:
    """Units that evaluate the ``missing`` members of ``family``; none when nothing is missing."""
    if not missing:
        return []
    model = family.model_bytes()
    if model is None:
        ids = family.member_ids()
        return [Unit(family, tuple(ids), 0, 1, family.members.estimated_bytes(ids), family.inputs_per_sae())]
    shards: list[list[str]] = [[]]
    for member_id in missing:
        if shards[-1] and model + family.members.estimated_bytes(shards[-1] + [member_id]) > budget_bytes:
            shards.append([])
        shards[-1].append(member_id)
    return [Unit(family.with_members(shard), tuple(shard), index, len(shards),
                 model + family.members.estimated_bytes(shard), family.inputs_per_sae())
            for index, shard in enumerate(shards)]


def run_unit(unit: Unit, device: str, cache_root: str | None, downstream: DownstreamConfig | None = None,
             threads: int | None = None) -> dict:
    """Run one unit where it is scheduled; returns the unit's family results (its members only).

    ``cache_root`` is the driver's ``$L0EVAL_CACHE`` when it set one (a shared file system, or the
    same machine); otherwise each node uses its own default cache. ``threads`` is the driver's torch
    thread count (``l0eval.torch_threads``), so a unit computes what the local executor would.
    """
    started = time.monotonic()
    if threads is not None:
        torch_threads.pin(threads)
    cpu_memory.keep_freed_memory()
    with _cache_root(cache_root):
        results = run_family(unit.family, device=device, progress=False, downstream=downstream)
    return {"results": results, "seconds": time.monotonic() - started, "host": socket.gethostname(),
            "pid": os.getpid()}


@contextmanager
def _cache_root(path: str | None) -> Iterator[None]:
    previous = os.environ.get("L0EVAL_CACHE")
    if path is not None:
        os.environ["L0EVAL_CACHE"] = path
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("L0EVAL_CACHE", None)
        else:
            os.environ["L0EVAL_CACHE"] = previous
