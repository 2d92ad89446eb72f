"""Where trained SAEs live: ``$L0EVAL_CACHE`` (default ``~/.cache/l0eval``), one SAELens folder per member.

A family's folder is keyed by its name and spec fingerprint, so a changed spec never reuses stale
SAEs. Members are written in the SAELens on-disk format (cfg.json + sae_weights.safetensors) and read
back with sae-lens; ``complete.json`` is written last, so a folder without it is an unfinished run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sae_lens import SAE, TrainingSAE

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


def load_member(path: Path, device: str = "cpu") -> SAE:
    """Load a SAELens-format folder; training architectures (e.g. ``batchtopk``) load as training SAEs,
    which keep their batch-level activation (the paper evaluates toy SAEs with BatchTopK)."""
    try:
        architecture = json.loads((path / "cfg.json").read_text()).get("architecture")
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsError(f"cannot read {path / 'cfg.json'}: {exc}") from exc
    loader = TrainingSAE if architecture in ("batchtopk", "matryoshka_batchtopk") else SAE
    try:
        sae = loader.load_from_disk(str(path), device=device)
    except Exception as exc:  # safetensors/sae-lens raise many types; name the file either way
        raise ResultsError(f"cannot load SAE from {path}: {exc}") from exc
    sae.eval()
    return sae
