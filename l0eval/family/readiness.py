"""What a family's `l0eval run` needs that is not there yet, and the command that provides it.

`l0eval families` prints it beside the listing, and `l0eval run` checks every family it is given before
it starts any, so a run of several families does not fail on the third after hours on the first two.
Stays light (no torch, no sae-lens import): listing families must be instant.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from l0eval.family.model import Family
from l0eval.family.registry import LoadedSAEs
from l0eval.saes.hub_cache import is_cached


@dataclass(frozen=True)
class Need:
    what: str
    command: str
    blocking: bool  # the run cannot start without it (else it fetches or builds it on the way)
    download: bool = False  # hub files: one summary line covers them in a listing of many families


def run_needs(family: Family) -> list[Need]:
    """Families l0eval trains (toys, synthetic worlds) need nothing; loaded families need members and files."""
    return family.members.needs(family)


def loaded_needs(family: Family, saes: LoadedSAEs) -> list[Need]:
    """What a family of loaded SAEs lacks: members at all, activations, local folders, files in the Hugging Face
    cache."""
    if not saes.saes:
        return [Need("has no members yet (0 members)", saes.build or _train_command(family), blocking=True)]
    needs = [] if family.activations is not None else [Need(
        "no activations to run on", "write a `kind: saes` family file listing these SAEs with an `activations:` "
        "section (README: SAE families from the hub)", blocking=True)]
    local_missing = [m.id for m in saes.saes if m.is_local and not is_cached(m)]
    if local_missing:
        needs.append(Need(f"{len(local_missing)} local SAE folder(s) missing ({', '.join(local_missing[:3])})",
                          f"fix their 'path' in {family.spec_path}", blocking=True))
    hub_missing = [m for m in saes.saes if not m.is_local and not is_cached(m)]
    # the model and corpus files the family's activations read, named in the same line as the SAEs
    gaps = (family.activations.missing_inputs() if family.activations is not None else []) + (
        [f"{len(hub_missing)} of {len(saes.saes)} SAEs"] if hub_missing else [])
    if gaps:
        offline = hub_offline()
        command = ("unset HF_HUB_OFFLINE, then " if offline else "") + f"l0eval download --family {family.name}"
        needs.append(Need(f"{', '.join(gaps)} not in the Hugging Face cache", command, blocking=offline,
                          download=True))
    return needs


def hub_offline() -> bool:
    """Whether huggingface_hub is told not to download (``HF_HUB_OFFLINE``)."""
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


def _train_command(family: Family) -> str:
    if family.activations is not None and family.activations.trains_members:
        return f"l0eval train --family {family.spec_path or family.name} --l0 K [K ...]"
    return f"list SAEs under 'members' in {family.spec_path}"


def needs_text(name: str, needs: list[Need]) -> list[str]:
    return [f"{name}: {need.what} -> {need.command}" for need in needs]
