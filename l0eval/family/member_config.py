"""A cached member's own config against what its family says: k / target L0, width and d_in.

dictionary_learning trainer folders (SAEBench) carry ``config.json`` with ``trainer.dict_size``,
``trainer.activation_dim`` and ``trainer.k`` (TopK-style) or ``trainer.target_l0`` (JumpReLU); SAELens folders
carry ``cfg.json`` with ``d_sae``, ``d_in`` and ``k`` (topk). Only files already in the cache are read (no
download, no torch): a family whose entry disagrees with its SAEs' own configs is refused before any run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from l0eval.errors import SpecError
from l0eval.family.model import Family
from l0eval.family.registry import LoadedMember, LoadedSAEs

CONFIG_FILES = {"dictionary_learning": "config.json", "sae_lens": "cfg.json"}


def cached_config(member: LoadedMember) -> tuple[str, dict[str, Any]] | None:
    """(storage format, the member's config) when its config file is cached or local; None otherwise."""
    from huggingface_hub import try_to_load_from_cache

    from l0eval.saes.hub_cache import storage_format

    fmt = storage_format(member)
    name = CONFIG_FILES.get(fmt)
    if name is None:  # Gemma Scope's params.npz: the config is inferred from the path by sae-lens
        return None
    if member.is_local:
        path = Path(member.path) / name
        found = str(path) if path.is_file() else None
    else:
        found = try_to_load_from_cache(member.repo_id, f"{member.path}/{name}")
    if not isinstance(found, str):
        return None
    try:
        config = json.loads(Path(found).read_text())
    except (OSError, ValueError):
        return None  # unreadable: the loader reports it, naming the file, when the member loads
    return (fmt, config) if isinstance(config, dict) else None


def declared_values(fmt: str, config: dict[str, Any]) -> dict[str, float | None]:
    """width, d_in and the sparsity target the config declares (None where it declares none)."""
    if fmt == "dictionary_learning":
        trainer = config.get("trainer") if isinstance(config.get("trainer"), dict) else {}
        target = trainer.get("k", trainer.get("target_l0"))
        return {"width": trainer.get("dict_size"), "d_in": trainer.get("activation_dim"), "l0": target}
    return {"width": config.get("d_sae"), "d_in": config.get("d_in"),
            "l0": config.get("k") if config.get("architecture") == "topk" else None}


def mismatches(member: LoadedMember, saes: LoadedSAEs, declared: dict[str, float | None]) -> list[str]:
    expected = {"width": saes.width or None, "d_in": saes.d_in or None, "l0": member.nominal_l0}
    labels = {"width": "width (dict_size/d_sae)", "d_in": "d_in", "l0": "k / target L0"}
    return [f"{labels[key]} {declared[key]:g} in its config, {expected[key]:g} in the family"
            for key in expected
            if expected[key] is not None and isinstance(declared[key], (int, float))
            and float(declared[key]) != float(expected[key])]


def check_cached_configs(family: Family) -> None:
    """Refuse a family of loaded SAEs whose cached configs disagree with its entry (one line, naming the member)."""
    saes = family.members
    if not isinstance(saes, LoadedSAEs):
        return
    for member in saes.saes:
        found = None if member.trained_here else cached_config(member)
        if found is None:
            continue
        problems = mismatches(member, saes, declared_values(*found))
        if problems:
            where = member.path if member.is_local else f"{member.repo_id}/{member.path}"
            raise SpecError(f"family '{family.name}' member '{member.id}' ({where}): {'; '.join(problems)}")
