"""What a family's `l0eval run` needs that is not there yet, and the command that provides it.

`l0eval families` prints it beside the listing, and `l0eval run` checks every family it is given before
it starts any, so a run of several families does not fail on the third after hours on the first two.
Stays light (no torch, no sae-lens import): listing families must be instant.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from l0eval.family.registry import SAEFamily
from l0eval.saes.hub_cache import is_cached


@dataclass(frozen=True)
class Need:
    what: str
    command: str
    blocking: bool  # the run cannot start without it (else it fetches or builds it on the way)


def run_needs(family) -> list[Need]:
    """Families l0eval trains (toys, synthetic worlds) need nothing; loaded families need members and files."""
    if not isinstance(family, SAEFamily):
        return []
    if not family.members:
        return [Need("has no members yet (0 members)", family.build or _train_command(family), blocking=True)]
    needs = []
    local_missing = [m.id for m in family.members if m.is_local and not is_cached(m)]
    if local_missing:
        needs.append(Need(f"{len(local_missing)} local SAE folder(s) missing ({', '.join(local_missing[:3])})",
                          f"fix their 'path' in {family.spec_path}", blocking=True))
    hub_missing = [m for m in family.members if not m.is_local and not is_cached(m)]
    if hub_missing:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        needs.append(Need(f"{len(hub_missing)} of {len(family.members)} SAEs not in the Hugging Face cache"
                          + (" (HF_HUB_OFFLINE is set)" if offline else ""),
                          f"l0eval download --family {family.name}", blocking=offline))
    return needs


def _train_command(family: SAEFamily) -> str:
    if "llm" in family.activations:
        return f"l0eval train --family {family.spec_path or family.name} --l0 K [K ...]"
    return f"list SAEs under 'members' in {family.spec_path}"


def needs_text(name: str, needs: list[Need]) -> list[str]:
    return [f"{name}: {need.what} -> {need.command}" for need in needs]
