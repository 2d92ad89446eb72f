"""The results contract: one JSON file per family run (see docs/results-schema.md).

The envelope is declared here as pydantic models (as SAEBench's ``eval_output.py`` declares its output)
and built in one function, ``build_results``; its JSON Schema, ``docs/results.schema.json``, is generated
from these models (``scripts/results_schema.py``). A new section is one optional field here.

Numbers are plain JSON numbers; NaN and inf never appear (they become null, with the reason stated
next to them by whoever produced them). Files are written atomically so an interrupted run never
leaves half a file behind.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import math
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict

import l0eval
from l0eval import atomic
from l0eval.errors import ResultsError

SCHEMA_VERSION = 2

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
        "torch_threads": torch.get_num_threads(),  # pinned per run (l0eval.torch_threads): CPU sums depend on it
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
    """Atomic write (``l0eval.atomic``), sorted keys off so the file reads top-down as the schema does."""
    return atomic.write_json(path, to_json_safe(payload))


def read_results(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsError(f"cannot read results file {path}: {exc}") from exc
    if not isinstance(payload, dict):
        raise ResultsError(f"{path}: a results file holds a JSON object, not a {type(payload).__name__}")
    if payload.get("schema_version") != SCHEMA_VERSION:
        raise ResultsError(f"{path}: schema_version {payload.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    return payload


class _Declared(BaseModel):
    """A section whose keys are all declared: an undeclared key is a bug in the writer."""

    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    """A section with declared keys and others that vary by family (kept as given)."""

    model_config = ConfigDict(extra="allow")


class FamilyRecord(_Open):
    """The family as run: a toy spec (toy, sae, training, evaluation, mixing) or loaded SAEs (members, ...)."""

    name: str
    kind: str
    description: str = ""
    selectors: dict[str, Any]


class RunRecord(_Declared):
    l0eval_version: str
    git_hash: str | None
    python: str
    platform: str
    device: str
    device_name: str
    library_versions: dict[str, str | None]
    torch_threads: int | None = None  # pinned per run (l0eval.torch_threads); files before issue 14 lack it
    started: str
    finished: str
    wall_seconds: float | None = None  # set by the executor once the family is done
    seeds: dict[str, Any] | None = None
    training: dict[str, Any]
    activations: dict[str, Any] | None = None  # LLM families: the activation cache's key
    world: dict[str, Any] | None = None  # synthetic worlds: the world as built or loaded
    cost_estimate: dict[str, Any] | None = None  # synthetic worlds: the estimate printed before training
    evaluation: dict[str, Any]
    metric_versions: dict[str, str]
    downstream: dict[str, Any] | None = None
    executor: dict[str, Any] | None = None  # --executor ray: the units and where they ran


class GroundTruth(_Declared):
    true_l0: float | None
    true_l0_measured: float | None = None
    score: str | None = None  # the metric that says how good a chosen SAE is
    expected: str | None = None
    reason: str | None = None  # why there is no true L0
    # synthetic worlds: the true L0 over the top-`top_width` features, every target the verdict judges
    # ({name, l0, score}) and whether they lie within one grid step of each other
    true_l0_top_width: float | None = None
    top_width: int | None = None
    targets: list[dict[str, Any]] | None = None
    targets_agree: bool | None = None
    targets_note: str | None = None
    target_sources: dict[str, Any] | None = None  # --targets saebench: the published files, per eval type


class SAEEntry(_Declared):
    id: str
    nominal_l0: float | None
    measured_l0: float | None
    seed: int | None = None
    rho: float | None = None
    trained_here: bool
    metrics: dict[str, Any]
    batches: dict[str, Any] | None = None  # per evaluation batch, for the bootstrap
    downstream: dict[str, Any] | None = None
    warning: str | None = None


class SelectorEntry(_Open):
    """One selector's choice; the chosen SAE's ground-truth score sits under the score's own name."""

    description: str
    label: str | None = None  # proxy, oracle, post_hoc or baseline (docs/selectors.md); files before issue 15 lack it
    chosen_l0: float | None
    reason: str | None = None
    error: float | None = None
    error_steps: int | None = None  # chosen minus true L0 in steps of the family's grid
    within_one: bool | None = None
    replicate_choices: list[float | None] | None = None
    replicates_within_one: str | None = None
    bootstrap: dict[str, Any] | None = None


class ResultsEnvelope(_Declared):
    schema_version: Literal[SCHEMA_VERSION]
    family: FamilyRecord
    run: RunRecord
    ground_truth: GroundTruth
    saes: list[SAEEntry]
    by_l0: list[dict[str, float | None]] | None = None  # L0 sweeps: the per-L0 metric table
    mixing_grid: list[dict[str, Any]] | None = None  # mixing toys
    selectors: dict[str, SelectorEntry]
    reference: dict[str, Any] | None = None  # L0-sweep toys trained here: the paper's reconstruction checks
    downstream_baselines: dict[str, Any] | None = None  # LLM families with probing


def build_results(**sections: Any) -> dict[str, Any]:
    """The results envelope from its sections (``family``, ``run``, ``ground_truth``, ``saes``, ``selectors``
    and the optional ones), validated against ``ResultsEnvelope``; sections given as None are left out.

    Returns the validated content as plain JSON values, keys in the order given (the models' dump would
    put declared keys before the open sections' others, reordering every file)."""
    envelope = {"schema_version": SCHEMA_VERSION,
                **{name: to_json_safe(value) for name, value in sections.items() if value is not None}}
    ResultsEnvelope.model_validate(envelope)
    return envelope


def results_json_schema() -> dict[str, Any]:
    """The JSON Schema of a results file, as committed in ``docs/results.schema.json``."""
    return ResultsEnvelope.model_json_schema()
