"""`l0eval export --format saebench`: a family's results as SAEBench ``eval_results.json`` files.

One file per (eval type, SAE) in ``<out>/<eval_type_id>/``, named as sae-bench names them
(``general_utils.get_results_filepath``), built with sae-bench's own pydantic output classes so the
schema cannot drift: ``core`` for every SAE, ``sparse_probing`` (SAEBench's protocol, l0eval's
``saebench_probing_k*``), ``sparse_probing_sae_probes`` (l0eval's ``sparse_probing_k*``) and
``absorption_first_letter`` where the results have them, and one ``l0eval_l0_selection`` file per family
(the verdict, ``l0eval.publish.l0_selection_eval``). docs/saebench-export.md has the name mapping.

Fields a SAEBench schema requires that l0eval does not measure are written as -1, SAEBench's own marker
for a value it could not compute (it saves NaN as -1, and a skipped full-width probe as -1); each file
lists them under ``eval_result_unstructured.not_measured`` and keeps l0eval's own metrics, under their
own names, in ``eval_result_unstructured.l0eval``. The same results file always exports the same bytes:
ids and timestamps derive from the run, not from the clock.
"""

from __future__ import annotations

import datetime as _dt
import json
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sae_bench.evals.absorption.eval_config import AbsorptionEvalConfig
from sae_bench.evals.absorption.eval_output import EVAL_TYPE_ID_ABSORPTION, AbsorptionEvalOutput
from sae_bench.evals.base_eval_output import BaseEvalOutput
from sae_bench.evals.core.eval_config import CoreEvalConfig
from sae_bench.evals.core.eval_output import (
    EVAL_TYPE_ID_CORE,
    CoreEvalOutput,
    CoreMetricCategories,
    MiscMetrics,
    ModelBehaviorPreservationMetrics,
    ModelPerformancePreservationMetrics,
    ReconstructionQualityMetrics,
    ShrinkageMetrics,
    SparsityMetrics,
    TokenStatsMetrics,
)
from sae_bench.evals.sparse_probing.eval_config import SparseProbingEvalConfig
from sae_bench.evals.sparse_probing.eval_output import (
    EVAL_TYPE_ID_SPARSE_PROBING,
    SparseProbingEvalOutput,
    SparseProbingLlmMetrics,
    SparseProbingMetricCategories,
    SparseProbingResultDetail,
    SparseProbingSaeMetrics,
)
from sae_bench.evals.sparse_probing_sae_probes.eval_config import SparseProbingSaeProbesEvalConfig
from sae_bench.evals.sparse_probing_sae_probes.eval_output import (
    EVAL_TYPE_ID_SPARSE_PROBING_SAE_PROBES,
    SaeProbesLlmMetrics,
    SaeProbesMetricCategories,
    SaeProbesResultDetail,
    SaeProbesSaeMetrics,
    SparseProbingSaeProbesEvalOutput,
)
from sae_bench.sae_bench_utils.general_utils import get_results_filepath

from l0eval.family.sae_lens_ids import SaeLensIdentity, member_identity
from l0eval.publish.l0_selection_eval import (
    EVAL_TYPE_ID_L0_SELECTION,
    L0SelectionEvalConfig,
    L0SelectionEvalOutput,
    L0SelectionGridMetrics,
    L0SelectionMetricCategories,
    L0SelectionResultDetail,
    L0SelectionTallyMetrics,
)
from l0eval.results import to_json_safe, write_json
from l0eval.selection.bootstrap import BootstrapDesign
from l0eval.selection.verdict import NotJudgeable, judge_family

NOT_MEASURED = -1.0  # SAEBench's marker for a value it could not compute
# SAEBench's custom-SAE convention (general_utils.load_and_format_sae): a unique name as the release, this id
CUSTOM_SAE_ID = "custom_sae"
SAE_BENCH_COMMIT = "Unknown"  # what sae-bench itself writes when installed from a wheel (no git checkout)

# SAEBench top-k fields (sparse_probing and sparse_probing_sae_probes have the same ks)
SAEBENCH_KS = (1, 2, 5, 10, 20, 50, 100)


def export_saebench(results: dict, out_dir: str | Path, design: BootstrapDesign = BootstrapDesign()) -> list[Path]:
    """Write every SAEBench file for one family's results; returns the paths written, in a fixed order."""
    written = [write_json(_output_path(out_dir, output, name), asdict(output))
               for name, output in per_sae_outputs(results)]
    verdict = verdict_output(results, design)
    if verdict is not None:
        path = Path(out_dir) / verdict.eval_type_id / f"{results['family']['name']}_eval_results.json"
        written.append(write_json(path, asdict(verdict)))
    return written


def _output_path(out_dir: str | Path, output: BaseEvalOutput, unique_name: str) -> Path:
    folder = Path(out_dir) / output.eval_type_id
    release = output.sae_lens_release_id or unique_name
    return Path(get_results_filepath(str(folder), release, output.sae_lens_id or CUSTOM_SAE_ID))


def per_sae_outputs(results: dict) -> list[tuple[str, BaseEvalOutput]]:
    """(unique SAE name, output) for every SAE and every eval type its metrics support."""
    outputs = []
    for entry in results["saes"]:
        context = _SaeContext(results, entry)
        for build in (core_output, saebench_probing_output, sae_probes_output, absorption_output):
            output = build(context)
            if output is not None:
                outputs.append((context.unique_name, output))
    return outputs


class _SaeContext:
    """One SAE of a results file and what every SAEBench output about it shares."""

    def __init__(self, results: dict, entry: dict):
        self.results, self.entry = results, entry
        self.family = results["family"]
        self.run = results.get("run", {})
        self.metrics = entry["metrics"]
        self.member = next((m for m in self.family.get("members", []) if m["id"] == entry["id"]), {})
        self.identity: SaeLensIdentity | None = member_identity(self.member.get("repo_id"), self.member.get("path"))
        self.unique_name = f"{self.family['name']}_{entry['id']}"
        self.llm = self.family.get("activations", {}).get("llm") or {}

    def common(self, eval_type_id: str) -> dict[str, Any]:
        return {"eval_id": _eval_id(self.family["name"], self.entry["id"], eval_type_id, self.run),
                "datetime_epoch_millis": _epoch_millis(self.run), "sae_bench_commit_hash": SAE_BENCH_COMMIT,
                "sae_lens_id": self.identity.sae_id if self.identity else CUSTOM_SAE_ID,
                "sae_lens_release_id": self.identity.release if self.identity else self.unique_name,
                "sae_lens_version": self.run.get("library_versions", {}).get("sae-lens"),
                "sae_cfg_dict": sae_cfg_dict(self.results, self.entry)}

    def unstructured(self, not_measured: list[str], **extra) -> dict[str, Any]:
        return to_json_safe({"l0eval": {"family": self.family["name"], "member": self.entry["id"],
                                        "nominal_l0": self.entry.get("nominal_l0"), "seed": self.entry.get("seed"),
                                        "metrics": self.metrics,
                                        "metric_versions": self.run.get("metric_versions", {})},
                             "not_measured": not_measured, **extra})

    @property
    def model_name(self) -> str:
        return _model_name(self.family)

    @property
    def downstream_settings(self) -> dict:
        return self.run.get("downstream", {})

    @property
    def downstream_seed(self) -> int:
        return int(self.run.get("seeds", {}).get("downstream", 42))


def _model_name(family: dict) -> str:
    """The LLM's name, or ``<kind>:<family>`` for data l0eval generates (toys, synthetic worlds)."""
    llm = family.get("activations", {}).get("llm") or {}
    return llm.get("model") or f"{family.get('kind', 'toy')}:{family['name']}"


def sae_cfg_dict(results: dict, entry: dict) -> dict[str, Any]:
    """What the results know of the SAE's config, under sae-lens's config key names."""
    family, run = results["family"], results.get("run", {})
    llm = family.get("activations", {}).get("llm") or {}
    d_in = family.get("d_in") or family.get("toy", {}).get("d_model")
    d_sae = family.get("sae", {}).get("d_sae") or run.get("evaluation", {}).get("width")
    member = next((m for m in family.get("members", []) if m["id"] == entry["id"]), {})
    # l0eval trains BatchTopK SAEs: every member of a family it trains (no member list), and trained-here members
    architecture = "batchtopk" if "members" not in family or member.get("trained_here") else None
    cfg = {"model_name": _model_name(family), "hook_name": llm.get("hook"),
           "d_in": d_in, "d_sae": d_sae, "architecture": architecture, "k": entry.get("nominal_l0"),
           "dtype": llm.get("dtype", "float32")}
    return {key: value for key, value in cfg.items() if value is not None}


# --- core -------------------------------------------------------------------------------------------------------

def core_output(ctx: _SaeContext) -> CoreEvalOutput:
    metrics, missing = ctx.metrics, []

    def take(category: str, field: str, value):
        if value is None:
            missing.append(f"{category}.{field}")
            return NOT_MEASURED
        return float(value)

    fvu = metrics.get("fvu")
    dead = metrics.get("dead_fraction")
    categories = {
        "model_behavior_preservation": {"kl_div_score": metrics.get("kl_div_score"),
                                        "kl_div_with_ablation": metrics.get("kl_div_zero_ablation"),
                                        "kl_div_with_sae": metrics.get("kl_div_with_sae")},
        "model_performance_preservation": {"ce_loss_score": metrics.get("ce_loss_score"),
                                           "ce_loss_with_ablation": metrics.get("ce_loss_zero_ablation"),
                                           "ce_loss_with_sae": metrics.get("ce_loss_with_sae"),
                                           "ce_loss_without_sae": metrics.get("ce_loss_clean")},
        # SAEBench's explained_variance is meant centred: l0eval's 1 - fvu (its variance_explained is uncentred);
        # SAEBench's mse divides by the tokens of its batch, so l0eval's mse is a different number
        "reconstruction_quality": {"explained_variance": None if fvu is None else 1.0 - fvu,
                                   "explained_variance_legacy": None, "mse": None, "cossim": None},
        "shrinkage": dict.fromkeys(("l2_norm_in", "l2_norm_out", "l2_ratio", "relative_reconstruction_bias")),
        "sparsity": {"l0": metrics.get("l0"), "l1": None},
        "misc_metrics": {"frac_alive": None if dead is None else 1.0 - dead,
                         **dict.fromkeys(("freq_over_1_percent", "freq_over_10_percent",
                                          "normalized_freq_over_1_percent", "normalized_freq_over_10_percent",
                                          "average_max_encoder_cosine_sim", "average_max_decoder_cosine_sim"))},
    }
    values = {category: {field: take(category, field, value) for field, value in fields.items()}
              for category, fields in categories.items()}
    config, tokens = _core_config(ctx)
    return CoreEvalOutput(
        eval_config=config,
        eval_result_metrics=CoreMetricCategories(
            model_behavior_preservation=ModelBehaviorPreservationMetrics(**values["model_behavior_preservation"]),
            model_performance_preservation=ModelPerformancePreservationMetrics(
                **values["model_performance_preservation"]),
            reconstruction_quality=ReconstructionQualityMetrics(**values["reconstruction_quality"]),
            shrinkage=ShrinkageMetrics(**values["shrinkage"]), sparsity=SparsityMetrics(**values["sparsity"]),
            token_stats=TokenStatsMetrics(**tokens), misc_metrics=MiscMetrics(**values["misc_metrics"])),
        eval_result_details=[], eval_result_unstructured=ctx.unstructured(missing), **ctx.common(EVAL_TYPE_ID_CORE))


def _core_config(ctx: _SaeContext) -> tuple[CoreEvalConfig, dict[str, int]]:
    """The config l0eval's evaluation corresponds to, and the token counts behind it."""
    evaluation, activations = ctx.run.get("evaluation", {}), ctx.run.get("activations", {})
    metrics = ctx.metrics
    if ctx.llm:
        batch = int(ctx.llm.get("batch_sequences") or 1)
        context = int(activations.get("context") or ctx.llm.get("context") or 0)
        spliced = int(evaluation.get("spliced_sequences") or 0)
        tokens = {"total_tokens_eval_reconstruction": spliced * context,
                  "total_tokens_eval_sparsity_variance": int(evaluation.get("token_rows") or 0)}
        config = CoreEvalConfig(
            model_name=ctx.model_name, llm_dtype=str(ctx.llm.get("model_dtype", "float32")),
            batch_size_prompts=batch, n_eval_reconstruction_batches=spliced // batch,
            n_eval_sparsity_variance_batches=int(activations.get("n_sequences") or 0) // batch,
            dataset=str(activations.get("dataset") or ""), context_size=context,
            compute_kl="kl_div_score" in metrics, compute_ce_loss="ce_loss_score" in metrics,
            compute_sparsity_metrics=True, compute_variance_metrics=True,
            exclude_special_tokens_from_reconstruction=bool(ctx.llm.get("exclude_bos")))
        return config, tokens
    # a toy: every sample is one "prompt" of one token, evaluated in the bootstrap's batches
    samples = int(evaluation.get("samples") or 0)
    batches = int(evaluation.get("bootstrap", {}).get("evaluation_batches") or 1)
    config = CoreEvalConfig(model_name=ctx.model_name, batch_size_prompts=max(1, samples // batches),
                            n_eval_reconstruction_batches=0, n_eval_sparsity_variance_batches=batches,
                            dataset=f"l0eval {ctx.family.get('kind', 'toy')} family '{ctx.family['name']}' "
                                    "(generated data)", context_size=1,
                            compute_sparsity_metrics=True, compute_variance_metrics=True)
    return config, {"total_tokens_eval_reconstruction": 0, "total_tokens_eval_sparsity_variance": samples}


# --- sparse probing (SAEBench protocol) ---------------------------------------------------------------------------

def saebench_probing_output(ctx: _SaeContext) -> SparseProbingEvalOutput | None:
    """l0eval's ``saebench_probing_k{k}`` as SAEBench's ``sae_top_{k}_test_accuracy``; the residual-stream
    baseline as ``llm_top_{k}_test_accuracy``. The full-width probes did not run (-1, as SAEBench's
    ``lower_vram_usage`` writes)."""
    settings = ctx.downstream_settings.get("saebench_probing")
    per_dataset = ctx.entry.get("downstream", {}).get("saebench_probing")
    if not settings or not per_dataset:
        return None
    baseline = ctx.results.get("downstream_baselines", {}).get("saebench_residual_top_k", {})
    ks = [k for k in settings["ks"] if k in SAEBENCH_KS]
    llm_means = {f"llm_top_{k}_test_accuracy": baseline.get(f"saebench_probing_k{k}") for k in ks}
    sae_means = {f"sae_top_{k}_test_accuracy": ctx.metrics.get(f"saebench_probing_k{k}") for k in ks}
    details = [SparseProbingResultDetail(
        dataset_name=name, llm_test_accuracy=NOT_MEASURED,
        **{f"llm_top_{k}_test_accuracy": baseline.get("per_dataset", {}).get(name, {}).get(str(k)) for k in ks},
        **{f"sae_top_{k}_test_accuracy": by_k.get(str(k)) for k in ks}) for name, by_k in per_dataset.items()]
    config = SparseProbingEvalConfig(
        random_seed=ctx.downstream_seed, dataset_names=list(settings["datasets"]),
        probe_train_set_size=2 * int(settings["train_per_class"]),
        probe_test_set_size=2 * int(settings["test_per_class"]), context_length=int(settings["context"]),
        llm_dtype=str(ctx.llm.get("model_dtype", "float32")), model_name=ctx.model_name, k_values=list(ks),
        lower_vram_usage=True)
    return SparseProbingEvalOutput(
        eval_config=config,
        eval_result_metrics=SparseProbingMetricCategories(
            llm=SparseProbingLlmMetrics(llm_test_accuracy=NOT_MEASURED, **llm_means),
            sae=SparseProbingSaeMetrics(**sae_means)),
        eval_result_details=details,
        eval_result_unstructured=ctx.unstructured(["llm.llm_test_accuracy"], protocol=settings.get("protocol"),
                                                  source=settings.get("source")),
        **ctx.common(EVAL_TYPE_ID_SPARSE_PROBING))


# --- sparse probing (sae-probes protocol) -------------------------------------------------------------------------

_SAE_PROBES_STATS = (("test_f1", "f1"), ("test_accuracy", "acc"), ("test_auc", "auc"))


def sae_probes_output(ctx: _SaeContext) -> SparseProbingSaeProbesEvalOutput | None:
    """l0eval's ``sparse_probing_k{k}`` (mean test F1) and ``_acc``/``_auc`` as sae-probes' SAEBench output:
    ``sae_top_{k}_test_{f1,accuracy,auc}`` where SAEBench has the field, every k in ``sae_metrics_by_k``."""
    settings = ctx.downstream_settings.get("sparse_probing")
    per_dataset = ctx.entry.get("downstream", {}).get("sparse_probing")
    if not settings or not per_dataset:
        return None
    ks = [int(k) for k in settings["ks"]]
    by_k = {k: {name: ctx.metrics.get(f"sparse_probing_k{k}" + ("" if ours == "f1" else f"_{ours}"))
                for name, ours in _SAE_PROBES_STATS} for k in ks}
    full = ctx.results.get("downstream_baselines", {}).get("residual_full_width", {})
    llm = {f"llm_{name}": full.get(f"sparse_probing_full_{ours}") for name, ours in _SAE_PROBES_STATS}
    details = []
    for dataset, stats in per_dataset.items():
        residual = full.get("per_dataset", {}).get(dataset, {})
        details.append(SaeProbesResultDetail(
            dataset_name=dataset, **{f"llm_{name}": residual.get(ours) for name, ours in _SAE_PROBES_STATS},
            **{f"sae_top_{k}_{name}": stats.get(str(k), {}).get(ours)
               for k in ks if k in SAEBENCH_KS for name, ours in _SAE_PROBES_STATS}))
    config = SparseProbingSaeProbesEvalConfig(
        model_name=ctx.model_name, random_seed=ctx.downstream_seed, dataset_names=list(settings["datasets"]),
        reg_type=str(settings.get("reg_type", "l1")), setting=str(settings.get("setting", "normal")), ks=ks,
        include_llm_baseline=bool(full))
    return SparseProbingSaeProbesEvalOutput(
        eval_config=config,
        eval_result_metrics=SaeProbesMetricCategories(
            llm=SaeProbesLlmMetrics(**llm),
            sae=SaeProbesSaeMetrics(**{f"sae_top_{k}_{name}": value for k, stats in by_k.items()
                                       if k in SAEBENCH_KS for name, value in stats.items()})),
        eval_result_details=details, sae_metrics_by_k=by_k,
        eval_result_unstructured=ctx.unstructured([], protocol=settings.get("protocol"),
                                                  excluded_datasets=settings.get("excluded_datasets", [])),
        **ctx.common(EVAL_TYPE_ID_SPARSE_PROBING_SAE_PROBES))


# --- absorption ------------------------------------------------------------------------------------------------

def absorption_output(ctx: _SaeContext) -> AbsorptionEvalOutput | None:
    """sae-bench's own ``absorption_first_letter`` output, stored unchanged by l0eval, with the SAE's ids."""
    stored = ctx.entry.get("downstream", {}).get("absorption", {}).get("saebench")
    if not stored:
        return None
    absorption = ctx.entry["downstream"]["absorption"]
    common = {**ctx.common(stored["eval_type_id"]), "eval_id": stored["eval_id"],
              "datetime_epoch_millis": stored["datetime_epoch_millis"]}
    return AbsorptionEvalOutput(
        eval_config=AbsorptionEvalConfig(**stored["eval_config"]),
        eval_result_metrics=stored["eval_result_metrics"], eval_result_details=stored["eval_result_details"],
        eval_result_unstructured=ctx.unstructured(
            [], ground_truth_probe_f1=absorption.get("ground_truth_probe_f1"),
            setting=ctx.downstream_settings.get("absorption", {}).get("setting")),
        **common)


# --- the verdict ----------------------------------------------------------------------------------------------

def verdict_output(results: dict, design: BootstrapDesign = BootstrapDesign()) -> L0SelectionEvalOutput | None:
    """The family's verdict as an ``l0eval_l0_selection`` output; None for a file with no L0 sweep."""
    try:
        verdict = judge_family(results, design)
    except NotJudgeable:
        return None
    rows = verdict["rows"]
    judged = [row for row in rows if row.get("target") is not None]
    steps = [abs(row["error_steps"]) for row in judged if row.get("error_steps") is not None]
    family, run = results["family"], results.get("run", {})
    details = [L0SelectionResultDetail(
        selector=row["selector"], target=row.get("target"), target_l0=row.get("target_l0"),
        chosen_l0=row["chosen_l0"], interval_90_low=(row.get("interval_90") or [None, None])[0],
        interval_90_high=(row.get("interval_90") or [None, None])[1], point_share=row.get("point_share"),
        plausible_l0s=list(row.get("plausible_l0s") or []), error_steps=row.get("error_steps"),
        within_one=row.get("within_one"), regret=row.get("regret")) for row in rows]
    grid = verdict["grid"]
    identity = _shared_release(results)
    config = L0SelectionEvalConfig(family=family["name"], family_kind=str(family.get("kind")),
                                   selectors=list(verdict["selectors"]), bootstrap_resamples=design.resamples,
                                   bootstrap_seed=design.seed, bootstrap_unit=verdict["bootstrap_unit"])
    return L0SelectionEvalOutput(
        eval_config=config,
        eval_id=_eval_id(family["name"], "", EVAL_TYPE_ID_L0_SELECTION, run),
        datetime_epoch_millis=_epoch_millis(run),
        eval_result_metrics=L0SelectionMetricCategories(
            grid=L0SelectionGridMetrics(n_l0s=len(grid), min_l0=min(grid), max_l0=max(grid),
                                        n_targets=len(verdict["targets"])),
            tally=L0SelectionTallyMetrics(judged=len(judged), within_one_step=sum(bool(r["within_one"])
                                                                                  for r in judged),
                                          mean_abs_error_steps=sum(steps) / len(steps) if steps else None)),
        eval_result_details=details,
        eval_result_unstructured=to_json_safe({
            "description": verdict["description"], "selectors": verdict["selectors"],
            "targets": [asdict(target) for target in verdict["targets"]],
            "no_target_reason": verdict["no_target_reason"], "rows": rows,
            "members": [{"id": e["id"], "nominal_l0": e.get("nominal_l0"), "seed": e.get("seed")}
                        for e in results["saes"]]}),
        sae_bench_commit_hash=SAE_BENCH_COMMIT, sae_lens_id=None,
        sae_lens_release_id=identity, sae_lens_version=run.get("library_versions", {}).get("sae-lens"),
        sae_cfg_dict={key: value for key, value in sae_cfg_dict(results, {"id": None}).items() if key != "k"})


def _shared_release(results: dict) -> str | None:
    """The sae-lens release every member of the family comes from, if there is one."""
    members = results["family"].get("members", [])
    releases = {(identity.release if identity else None)
                for identity in (member_identity(m.get("repo_id"), m.get("path")) for m in members)}
    return releases.pop() if len(releases) == 1 else None


# --- ids and times ----------------------------------------------------------------------------------------------

def _epoch_millis(run: dict) -> int:
    """When the run finished (else started), in epoch milliseconds; 0 for a file that does not say."""
    stamp = run.get("finished") or run.get("started")
    if not stamp:
        return 0
    return int(_dt.datetime.fromisoformat(stamp).timestamp() * 1000)


def _eval_id(family: str, member: str, eval_type_id: str, run: dict) -> str:
    """A UUID fixed by what is exported (SAEBench draws uuid4; a fixed one keeps exports byte-identical)."""
    key = json.dumps([family, member, eval_type_id, run.get("finished") or run.get("started")])
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"l0eval:{key}"))


def output_classes() -> dict[str, type[BaseEvalOutput]]:
    """eval_type_id -> the pydantic class that reads such a file back (``TypeAdapter(cls).validate_json``)."""
    return {EVAL_TYPE_ID_CORE: CoreEvalOutput, EVAL_TYPE_ID_SPARSE_PROBING: SparseProbingEvalOutput,
            EVAL_TYPE_ID_SPARSE_PROBING_SAE_PROBES: SparseProbingSaeProbesEvalOutput,
            EVAL_TYPE_ID_ABSORPTION: AbsorptionEvalOutput, EVAL_TYPE_ID_L0_SELECTION: L0SelectionEvalOutput}
