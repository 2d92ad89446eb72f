"""Where trained SAEs live: ``$L0EVAL_CACHE`` (default ``~/.cache/l0eval``), one SAELens folder per member.

A family's folder is keyed by its name and spec fingerprint, so a changed spec never reuses stale
SAEs. Members are written in the SAELens on-disk format (cfg.json + sae_weights.safetensors) and read
back with sae-lens; ``complete.json`` is written last, so a folder without it is an unfinished run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from l0eval.errors import ResultsError

COMPLETE_MARKER = "complete.json"


def cache_root() -> Path:
    return Path(os.environ.get("L0EVAL_CACHE", Path.home() / ".cache" / "l0eval"))


def family_dir(name: str, fingerprint: str) -> Path:
    return cache_root() / "families" / f"{name}-{fingerprint}"


def is_complete(directory: Path) -> bool:
    return (directory / COMPLETE_MARKER).is_file()


def mark_complete(directory: Path, info: dict) -> None:
    (directory / COMPLETE_MARKER).write_text(json.dumps(info, indent=2) + "\n")


def read_marker(directory: Path) -> dict:
    return json.loads((directory / COMPLETE_MARKER).read_text())


def trained_dir(family_name: str) -> Path:
    """Where SAEs trained to fill a family's missing L0s live."""
    return cache_root() / "trained" / family_name


def trained_members(family_name: str) -> list[dict]:
    """Members trained here for ``family_name`` ({"path", "nominal_l0", ...}), in the order they were added."""
    manifest = trained_dir(family_name) / TRAINED_MANIFEST
    return json.loads(manifest.read_text()) if manifest.is_file() else []


def add_trained_members(family_name: str, added: list[dict]) -> None:
    """Record new trained members; a retrained folder replaces its earlier entry."""
    new_paths = {member["path"] for member in added}
    members = [m for m in trained_members(family_name) if m["path"] not in new_paths] + added
    trained_dir(family_name).mkdir(parents=True, exist_ok=True)
    (trained_dir(family_name) / TRAINED_MANIFEST).write_text(json.dumps(members, indent=2) + "\n")


TRAINED_MANIFEST = "members.json"


def load_member(path: Path, device: str = "cpu"):
    """Load a SAELens-format folder; training architectures (e.g. ``batchtopk``) load as training SAEs,
    which keep their batch-level activation (the paper evaluates toy SAEs with BatchTopK)."""
    try:
        architecture = json.loads((path / "cfg.json").read_text()).get("architecture")
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsError(f"cannot read {path / 'cfg.json'}: {exc}") from exc
    from sae_lens import SAE, TrainingSAE  # imported here: listing families must not pay sae-lens's import time

    loader = TrainingSAE if architecture in ("batchtopk", "matryoshka_batchtopk") else SAE
    try:
        sae = loader.load_from_disk(str(path), device=device)
    except Exception as exc:  # safetensors/sae-lens raise many types; name the file either way
        raise ResultsError(f"cannot load SAE from {path}: {exc}") from exc
    sae.eval()
    return sae
