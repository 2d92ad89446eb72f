"""The results contract: one JSON file per family run (see docs/results-schema.md).

Numbers are plain JSON numbers; NaN and inf never appear (they become null, with the reason stated
next to them by whoever produced them). Files are written atomically so an interrupted run never
leaves half a file behind.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

import l0eval
from l0eval.errors import ResultsError

SCHEMA_VERSION = 1

TRACKED_LIBRARIES = ("torch", "sae-lens", "sae-bench", "sae-probes", "transformers", "huggingface-hub", "numpy",
                     "scipy", "scikit-learn", "pandas", "kneed")


def library_versions() -> dict[str, str | None]:
    versions = {}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_hash() -> str | None:
    """The l0eval checkout's commit, or None for an installed copy without git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(l0eval.__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def is_committed(path: str | Path) -> bool:
    """Whether git tracks ``path`` (a results file of an earlier, recorded run); False outside a checkout."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        out = subprocess.run(["git", "ls-files", "--error-unmatch", path.name], cwd=path.parent, capture_output=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0


def device_description(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def run_header(device: str) -> dict[str, Any]:
    return {
        "l0eval_version": l0eval.__version__,
        "git_hash": git_hash(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": device,
        "device_name": device_description(device),
        "library_versions": library_versions(),
        "started": now(),
    }


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def to_json_safe(value: Any) -> Any:
    """Tensors and numpy scalars to Python numbers, non-finite floats to None, recursively."""
    if isinstance(value, dict):
        return {str(key): to_json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_safe(item) for item in value]
    if isinstance(value, torch.Tensor):
        return to_json_safe(value.tolist())
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Atomic write, sorted keys off so the file reads top-down as the schema does."""
    return write_text(path, json.dumps(to_json_safe(payload), indent=2, allow_nan=False) + "\n")


def write_text(path: str | Path, text: str) -> Path:
    """Atomic write (temp file + rename): an interrupted write leaves the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_results(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsError(f"cannot read results file {path}: {exc}") from exc
    if payload.get("schema_version") != SCHEMA_VERSION:
        raise ResultsError(f"{path}: schema_version {payload.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    return payload
