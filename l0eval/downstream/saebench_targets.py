"""SAEBench's published results as per-SAE metrics and ground-truth targets (docs/saebench-targets.md).

SAEBench evaluated the registry's SAEBench families itself (the "SAEBench - Jan 25" suite) and published
one JSON file per (eval type, SAE) in the Hugging Face dataset ``adamkarvonen/sae_bench_results_0125``:
``{eval_type}/{release}/{file}``, the file named by sae-bench's ``get_results_filepath`` and then shortened by
SAEBench's export notebook. This module finds a family member's files in the hub cache (downloading them
when online), parses each with sae-bench's own pydantic output class, checks that it is about that SAE, and
turns it into flat metric columns, per-unit values for the bootstrap, and the file's source.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from l0eval.errors import L0EvalError, first_line

DEFAULT_DATASET = "adamkarvonen/sae_bench_results_0125"
# What the Jan-25 dataset holds per SAE that l0eval reads; sae-probes results (SAEBench's
# sparse_probing_sae_probes, added to SAEBench in October 2025) are not in it, so they are asked for by name.
DEFAULT_EVALS = ("core", "sparse_probing", "absorption")
EVAL_TYPES = (*DEFAULT_EVALS, "sparse_probing_sae_probes")

# SAEBench's export notebook (sae_bench_utils/misc_notebooks/export_results.ipynb, ``KEYWORDS``) removed these
# from every file name before the upload, for the hub's path-length limit; a notebook cell, so not importable.
SHORTENED_KEYWORDS = ("custom_sae_", "AprilUpdate", "EleutherAI_", "google_", "Trainer", "ctx1024")
# SAEBench's unique id of an SAE it loads itself (general_utils.load_and_format_sae: custom SAE objects)
CUSTOM_SAE_ID = "custom_sae"
# The results name every Jan-25 SAE after the 0108 training run, whichever repo hosts its weights now
# (SAEBench's graphing scripts select e.g. "saebench_gemma-2-2b_width-2pow16_date-0108")
RESULTS_DATE = "0108"
# registry architecture -> SAEBench's trainer folder prefix (trainer class without "Trainer"/"AprilUpdate")
ARCHITECTURE_FOLDERS = {"standard": "Standard", "topk": "TopK", "batchtopk": "BatchTopK", "jumprelu": "JumpRelu",
                        "gated": "GatedSAE", "panneal": "PAnneal", "matryoshka": "MatryoshkaBatchTopK"}
NOT_MEASURED = -1.0  # SAEBench writes NaN and values it could not compute as -1


class SaebenchResultsError(L0EvalError):
    """A published result file is missing, unreadable, or about another SAE."""


@dataclass(frozen=True)
class ResultsDataset:
    """Which published results to read: a hub dataset, its revision (None: the cached ``refs/main``, or the
    hub's main when online) and the eval types."""

    repo_id: str = DEFAULT_DATASET
    revision: str | None = None
    evals: tuple[str, ...] = DEFAULT_EVALS

    @classmethod
    def parse(cls, text: str | None, evals: str | None = None) -> ResultsDataset:
        """``REPO_ID[@REVISION]`` and a comma-separated eval list (defaults: the Jan-25 dataset, its evals)."""
        repo_id, _, revision = (text or DEFAULT_DATASET).partition("@")
        chosen = tuple(e.strip() for e in evals.split(",")) if evals else DEFAULT_EVALS
        unknown = [e for e in chosen if e not in EVAL_TYPES]
        if unknown or "core" not in chosen:
            raise SaebenchResultsError(f"--saebench-evals must name core and any of {', '.join(EVAL_TYPES[1:])}"
                                       + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
        return cls(repo_id, revision or None, tuple(dict.fromkeys(chosen)))


@dataclass(frozen=True)
class PublishedName:
    """Where SAEBench's results about one SAE are: ``{eval_type}/{release}/{file_name}``."""

    release: str  # e.g. saebench_pythia-160m-deduped_width-2pow14_date-0108
    location: str  # the trainer folder, e.g. TopK_pythia-160m-deduped__0108/resid_post_layer_8/trainer_2

    @property
    def unique_id(self) -> str:
        """SAEBench's unique name for the SAE (run_all_evals_dictionary_learning_saes.run_evals)."""
        return f"{self.release}_{self.location.replace('/', '_')}"

    def path(self, eval_type: str) -> str:
        return f"{eval_type}/{self.release}/{published_file_name(self.unique_id, CUSTOM_SAE_ID)}"


def published_file_name(release: str, sae_id: str) -> str:
    """The name sae-bench writes (``get_results_filepath``) as SAEBench's export shortened it."""
    from sae_bench.sae_bench_utils.general_utils import get_results_filepath

    name = PurePosixPath(get_results_filepath("", release, sae_id)).name
    for keyword in SHORTENED_KEYWORDS:
        name = name.replace(keyword, "")
    return name


def published_name(model: str, layer: int | None, width: int, architecture: str, member_id: str) -> PublishedName:
    """The published name of a SAEBench-suite member (``trainer_{i}`` of a registry family)."""
    arch = ARCHITECTURE_FOLDERS.get(architecture)
    power = math.log2(width) if width > 0 else 0.5
    if arch is None or layer is None or not power.is_integer() or not member_id.startswith("trainer_"):
        raise SaebenchResultsError(f"member '{member_id}' is not one of the SAEBench suite's trainers (architecture "
                                   f"{architecture!r}, width {width}, layer {layer}): SAEBench published no "
                                   "results for it")
    release = f"saebench_{model}_width-2pow{int(power)}_date-{RESULTS_DATE}"
    return PublishedName(release, f"{arch}_{model}__{RESULTS_DATE}/resid_post_layer_{layer}/{member_id}")


@dataclass(frozen=True)
class PublishedFile:
    """One parsed result file and where it came from."""

    eval_type: str
    output: Any  # the sae-bench output class instance
    source: dict[str, Any]  # repo_id, revision, path, and the file's own ids


def fetch(dataset: ResultsDataset, path: str, download_command: str) -> Path:
    """The cached file (downloaded first when online and missing)."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        return Path(hf_hub_download(dataset.repo_id, path, repo_type="dataset", revision=dataset.revision))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:  # LocalEntryNotFoundError is an EntryNotFound
        why = "HF_HUB_OFFLINE is set" if constants.is_offline_mode() else "the hub did not answer"
        raise SaebenchResultsError(f"SAEBench result {dataset.repo_id}:{path} is not in the Hugging Face cache and "
                                   f"{why}; fetch it with `{download_command}`") from exc
    except EntryNotFoundError as exc:
        raise SaebenchResultsError(f"{dataset.repo_id} has no {path}: SAEBench did not publish that result "
                                   "(drop its eval type with --saebench-evals)") from exc


def snapshot_revision(cached: Path) -> str | None:
    """The commit a cached file belongs to (``.../snapshots/<commit>/<path>``)."""
    parts = cached.parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else None


def output_class(eval_type: str) -> type:
    from sae_bench.evals.absorption.eval_output import AbsorptionEvalOutput
    from sae_bench.evals.core.eval_output import CoreEvalOutput
    from sae_bench.evals.sparse_probing.eval_output import SparseProbingEvalOutput
    from sae_bench.evals.sparse_probing_sae_probes.eval_output import SparseProbingSaeProbesEvalOutput

    return {"core": CoreEvalOutput, "sparse_probing": SparseProbingEvalOutput, "absorption": AbsorptionEvalOutput,
            "sparse_probing_sae_probes": SparseProbingSaeProbesEvalOutput}[eval_type]


def parse_output(eval_type: str, raw: Any, where: str) -> Any:
    """A published file as sae-bench's output class (pydantic-validated)."""
    from pydantic import TypeAdapter, ValidationError

    if not isinstance(raw, dict):
        raise SaebenchResultsError(f"{where}: not a SAEBench {eval_type} result (a JSON {type(raw).__name__})")
    if eval_type == "core":
        raw = _with_legacy_explained_variance(raw)
    try:
        return TypeAdapter(output_class(eval_type)).validate_python(raw)
    except ValidationError as exc:
        raise SaebenchResultsError(f"{where}: not a SAEBench {eval_type} result ({first_line(exc)}; "
                                   f"{exc.error_count()} problem(s))") from exc


def _with_legacy_explained_variance(raw: dict) -> dict:
    """Core files written before SAEBench 3b58c67 (2025-03-07; the Jan-25 suite) have one
    ``explained_variance``, computed with what SAEBench now calls the legacy formula, and no
    ``explained_variance_legacy``, which sae-bench 0.6.0's class requires: the value is that field's."""
    quality = raw.get("eval_result_metrics", {}).get("reconstruction_quality")
    if not isinstance(quality, dict) or "explained_variance_legacy" in quality:
        return raw
    metrics = {**raw["eval_result_metrics"],
               "reconstruction_quality": {**quality, "explained_variance_legacy": quality.get("explained_variance")}}
    return {**raw, "eval_result_metrics": metrics}


def check_identity(output: Any, name: PublishedName, where: str, d_in: int, width: int) -> None:
    """The file is about this SAE: its own ids name the file it sits in, and its SAE's shape is the member's."""
    expected = PurePosixPath(where).name
    if output.sae_lens_release_id is not None:
        named = published_file_name(output.sae_lens_release_id, output.sae_lens_id or CUSTOM_SAE_ID)
        if named != expected:
            raise SaebenchResultsError(f"{where} is about another SAE: it names release "
                                       f"{output.sae_lens_release_id!r}, id {output.sae_lens_id!r} ({named}), "
                                       f"not {name.unique_id}")
    cfg = output.sae_cfg_dict or {}
    for key, value in (("d_in", d_in), ("d_sae", width)):
        if value and cfg.get(key) is not None and int(cfg[key]) != value:
            raise SaebenchResultsError(f"{where} is about another SAE: its {key} is {cfg[key]}, the member's {value}")


def read_published(dataset: ResultsDataset, name: PublishedName, eval_type: str, d_in: int, width: int,
                   download_command: str) -> PublishedFile:
    """One eval type's published file about one SAE, fetched, parsed and checked."""
    path = name.path(eval_type)
    cached = fetch(dataset, path, download_command)
    where = f"{dataset.repo_id}:{path}"
    try:
        raw = json.loads(cached.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SaebenchResultsError(f"{where}: cannot read it ({first_line(exc)})") from exc
    output = parse_output(eval_type, raw, where)
    check_identity(output, name, where, d_in, width)
    source = {"repo_id": dataset.repo_id, "revision": snapshot_revision(cached), "path": path,
              "eval_type_id": output.eval_type_id, "eval_id": output.eval_id,
              "datetime_epoch_millis": output.datetime_epoch_millis,
              "sae_bench_commit_hash": output.sae_bench_commit_hash,
              "sae_lens_release_id": output.sae_lens_release_id, "sae_lens_id": output.sae_lens_id}
    return PublishedFile(eval_type, output, source)


def _measured(value: float | None) -> float | None:
    """SAEBench's -1 (NaN or not computed) as null."""
    return None if value is None or value == NOT_MEASURED or not math.isfinite(value) else float(value)


def core_columns(output: Any) -> dict[str, float | None]:
    """l0eval's reconstruction/sparsity/CE-KL columns from SAEBench's core numbers (formulas: CORE_FORMULAS)."""
    metrics = output.eval_result_metrics
    alive = _measured(metrics.misc_metrics.frac_alive)
    return {"l0": _measured(metrics.sparsity.l0),
            "variance_explained": _measured(metrics.reconstruction_quality.explained_variance_legacy),
            "saebench_explained_variance": _measured(metrics.reconstruction_quality.explained_variance),
            "mse": _measured(metrics.reconstruction_quality.mse),
            "ce_loss_score": _measured(metrics.model_performance_preservation.ce_loss_score),
            "kl_div_score": _measured(metrics.model_behavior_preservation.kl_div_score),
            "dead_fraction": None if alive is None else 1.0 - alive}


# target column -> (eval type, the metric's path in eval_result_metrics, the per-unit field of each detail row,
# the detail row's unit name field); the verdict bootstraps each target over its units
TARGET_FIELDS = {
    "saebench_sparse_probing_k1": ("sparse_probing", ("sae", "sae_top_1_test_accuracy"), "sae_top_1_test_accuracy",
                                   "dataset_name"),
    "saebench_sae_probes_k1": ("sparse_probing_sae_probes", ("sae", "sae_top_1_test_f1"), "sae_top_1_test_f1",
                               "dataset_name"),
    "saebench_absorption_fraction": ("absorption", ("mean", "mean_absorption_fraction_score"),
                                     "mean_absorption_fraction", "first_letter"),
    "saebench_full_absorption": ("absorption", ("mean", "mean_full_absorption_score"), "full_absorption_rate",
                                 "first_letter"),
}


def target_columns(file: PublishedFile) -> tuple[dict[str, float | None], dict[str, dict[str, float]]]:
    """The target columns one file gives, and their per-unit values (datasets, letters) where it lists them."""
    columns, units = {}, {}
    for column, (eval_type, (category, field), unit_field, unit_name) in TARGET_FIELDS.items():
        if eval_type != file.eval_type:
            continue
        columns[column] = _measured(getattr(getattr(file.output.eval_result_metrics, category), field))
        per_unit = {getattr(row, unit_name): _measured(getattr(row, unit_field))
                    for row in file.output.eval_result_details or []}
        if per_unit and all(value is not None for value in per_unit.values()):
            units[column] = per_unit
    return columns, units


@dataclass(frozen=True)
class MemberResults:
    """What SAEBench published about one member: flat metric columns, per-unit target values, sources."""

    columns: dict[str, float | None]
    units: dict[str, dict[str, float]]
    sources: dict[str, dict[str, Any]]  # eval type -> source


def member_results(dataset: ResultsDataset, name: PublishedName, d_in: int, width: int,
                   download_command: str) -> MemberResults:
    columns: dict[str, float | None] = {}
    units: dict[str, dict[str, float]] = {}
    sources = {}
    for eval_type in dataset.evals:
        file = read_published(dataset, name, eval_type, d_in, width, download_command)
        sources[eval_type] = file.source
        if eval_type == "core":
            columns.update(core_columns(file.output))
        else:
            flat, per_unit = target_columns(file)
            columns.update(flat)
            units.update(per_unit)
    return MemberResults(columns, units, sources)
