"""Units of work for a distributed run, sized by memory.

A unit is one toy family (its SAEs train together, so it is not split) or one shard of an SAE
family's members. A shard of an LLM family loads the model once and streams each activation batch
through all of its SAEs (``l0eval.runs.saes``); shards are cut so that model + SAEs fit one device's
memory. Activations never travel between machines: a unit reads the on-disk activation cache of its
node (``$L0EVAL_CACHE/activations``) or fills it, once per node, under a file lock.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from l0eval import torch_threads
from l0eval.downstream.suite import DownstreamConfig
from l0eval.executors.local import run_family
from l0eval.family.registry import SAEFamily
from l0eval.family.toy_spec import FamilySpec
from l0eval.saes import store

# SAE weights and activations are float32 whatever the model's dtype
FLOAT_BYTES = 4


@dataclass(frozen=True)
class Unit:
    """One task: ``family`` holds only this unit's members (a whole toy family, or a shard)."""

    family: FamilySpec | SAEFamily
    member_ids: tuple[str, ...]
    shard: int
    n_shards: int
    estimated_bytes: int  # model + SAEs + one batch of SAE activations
    tokens: int  # inputs streamed through each SAE (LLM tokens or toy samples)

    @property
    def name(self) -> str:
        return f"{self.family.name}[{self.shard + 1}/{self.n_shards}]"


def member_ids(family: FamilySpec | SAEFamily) -> list[str]:
    if isinstance(family, FamilySpec):
        from l0eval.runs.toy import family_members

        return [member.id for member in family_members(family)]
    return [member.id for member in family.members]


def plan_units(family: FamilySpec | SAEFamily, missing: list[str], budget_bytes: int) -> list[Unit]:
    """Units that evaluate the ``missing`` members of ``family``; none when nothing is missing.

    Only LLM families are split: a toy family trains all its members together, and an SAE family
    on a toy's data scores them on one in-memory batch.
    """
    if not missing:
        return []
    if not (isinstance(family, SAEFamily) and "llm" in family.activations):
        return [Unit(family, tuple(member_ids(family)), 0, 1, _small_family_bytes(family), _tokens(family))]
    spec = family.activations["llm"]
    model = estimated_model_bytes(spec.model, spec.model_dtype)
    by_id = {member.id: member for member in family.members}
    shards: list[list] = [[]]
    for member_id in missing:
        member = by_id[member_id]
        if shards[-1] and model + _shard_bytes(family, shards[-1] + [member]) > budget_bytes:
            shards.append([])
        shards[-1].append(member)
    return [Unit(dataclasses.replace(family, members=tuple(shard)), tuple(m.id for m in shard), index, len(shards),
                 model + _shard_bytes(family, shard), _tokens(family))
            for index, shard in enumerate(shards)]


def _shard_bytes(family: SAEFamily, members: list) -> int:
    """The SAEs' weights plus one 4096-token batch of latent activations (freed SAE by SAE)."""
    widths = [_width(family, member) for member in members]
    weights = sum(2 * family.d_in * width + width + family.d_in for width in widths)
    return FLOAT_BYTES * (weights + 4096 * max(widths))


def _width(family: SAEFamily, member) -> int:
    """The family's declared width, else the local folder's cfg.json ``d_sae``; 0 if unknown before download."""
    if family.width:
        return family.width
    cfg = Path(member.path) / "cfg.json"
    if member.is_local and cfg.is_file():
        return int(store.read_cfg(cfg.parent).get("d_sae", 0))
    return 0


def _small_family_bytes(family: FamilySpec | SAEFamily) -> int:
    if isinstance(family, SAEFamily):
        return _shard_bytes(family, list(family.members))
    weights = 2 * family.toy.d_model * family.sae.d_sae * len(member_ids(family))
    return FLOAT_BYTES * (weights + family.evaluation.samples * (family.toy.d_model + family.toy.n_features))


def _tokens(family: FamilySpec | SAEFamily) -> int:
    if isinstance(family, FamilySpec):
        return family.evaluation.samples
    if "llm" in family.activations:
        return family.activations["llm"].sequences * family.activations["llm"].context
    from l0eval.family.toy_spec import resolve_family

    toy = family.activations.get("toy")
    return resolve_family(toy).evaluation.samples if toy else 0  # no activations: the unit reports the error


def estimated_model_bytes(model: str, dtype: str = "float32") -> int:
    """Parameter count x dtype size, read from the model's config on the meta device (no weights loaded);
    0 when the config is not on this machine (a hub model not yet downloaded, a GGUF not yet converted)."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    from l0eval.activations.llm.models import NAMED_MODELS

    folder = store.cache_root() / "models" / model if model in NAMED_MODELS else model
    try:
        config = AutoConfig.from_pretrained(folder)
    except (OSError, ValueError):
        return 0
    with init_empty_weights():
        skeleton = AutoModelForCausalLM.from_config(config)
    return getattr(torch, dtype).itemsize * sum(parameter.numel() for parameter in skeleton.parameters())


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
