"""Downstream metrics for every SAE of an LLM family, on model activations shared by the whole family.

Which metrics run is a ``DownstreamConfig``. By default everything runs; on CPU probing uses a documented
dataset subset and absorption a reduced word sample (both recorded in ``run.downstream``). The flat per-SAE
metrics use fixed column names (``sparse_probing_k1``, ``sparse_probing_k16``, ``absorption_fraction``,
``full_absorption``, ...) that the verdict builds on.
"""

from __future__ import annotations

import importlib.metadata
import sys
import time
from dataclasses import asdict, dataclass, field

from l0eval.downstream import absorption as absorption_eval
from l0eval.downstream import probe_data, saebench_probing
from l0eval.downstream import sae_probes_protocol as sae_probes
from l0eval.errors import L0EvalError
from l0eval.metrics.registry import ABSORPTION_COLUMNS, ABSORPTION_SCORES

ALL_METRICS = ("core", "snd", "probing", "absorption")
DEFAULT_SEED = 42  # sae-probes' and SAEBench's default seed
DEFAULT_KS = (1, 16)  # the paper's sae-probes call


@dataclass(frozen=True)
class DownstreamConfig:
    """What to run beyond the streamed core/s_n^dec pass, and how."""

    metrics: tuple[str, ...] = ALL_METRICS
    probe_datasets: tuple[str, ...] | None = None  # None: all on GPU, probe_data.CPU_DATASETS on CPU
    probe_exclude: tuple[str, ...] = ()
    probe_ks: tuple[int, ...] = DEFAULT_KS
    absorption: absorption_eval.AbsorptionSetting | None = None  # None: FULL on GPU, CPU_REDUCED on CPU
    saebench_probing: saebench_probing.SAEBenchProbingSetting | None = None  # None: SAEBench sizes on GPU, CPU_SETTING
    seed: int = DEFAULT_SEED
    explicit: bool = False  # metrics named by the user: one that cannot run is an error, not a skip
    skipped: dict[str, str] = field(default_factory=dict)  # metric -> why it was left out

    def wants(self, metric: str) -> bool:
        return metric in self.metrics


def parse_metrics(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in ALL_METRICS]
    if unknown or not names:
        raise L0EvalError(f"unknown metric(s) {', '.join(unknown) or '(none given)'}; choose from "
                          f"{','.join(ALL_METRICS)}")
    return names


def run_downstream(loaded, hook: str, names: list[str], saes: list, config: DownstreamConfig, device: str,
                   exclude_from_corpus: list[str], progress: bool = True) -> dict:
    """Per-SAE flat metrics and details, the residual baselines, and the run record.

    Returns {"per_sae": [flat metrics], "details": [{"sparse_probing": ..., "absorption": ...}],
    "baselines": {...}, "record": {...}}.
    """
    _note_reduced_settings(config, device)
    per_sae: list[dict] = [{} for _ in saes]
    details: list[dict] = [{} for _ in saes]
    baselines: dict = {}
    record: dict = {"metrics": list(config.metrics), "skipped": dict(config.skipped),
                    "seeds": {"downstream": config.seed}, "wall_seconds": {}}
    if config.wants("probing"):
        started = time.monotonic()
        record["sparse_probing"] = _probing(loaded, hook, names, saes, config, device, exclude_from_corpus,
                                            per_sae, details, baselines, progress)
        record["wall_seconds"]["sparse_probing"] = time.monotonic() - started
        started = time.monotonic()
        record["saebench_probing"] = _saebench_probing(loaded, hook, saes, config, device,
                                                       record["sparse_probing"]["excluded_datasets"], per_sae,
                                                       details, baselines)
        record["wall_seconds"]["saebench_probing"] = time.monotonic() - started
    if config.wants("absorption"):
        started = time.monotonic()
        try:
            record["absorption"] = _absorption(loaded, hook, names, saes, config, device, per_sae, details)
        except absorption_eval.AbsorptionUnavailable as exc:
            if config.explicit:
                raise
            record["skipped"]["absorption"] = str(exc)
        record["wall_seconds"]["absorption"] = time.monotonic() - started
    return {"per_sae": per_sae, "details": details, "baselines": baselines, "record": record}


def _note_reduced_settings(config: DownstreamConfig, device: str) -> None:
    """Say on stderr what the CPU defaults leave out (the results record it too)."""
    if device.startswith("cuda"):
        return
    reduced = []
    if config.wants("probing") and not config.probe_datasets:
        reduced.append(f"probing runs {len(probe_data.CPU_DATASETS)} of the sae-probes datasets "
                       "(probe_data.CPU_DATASETS), SAEBench's protocol at reduced sizes")
    if config.wants("absorption") and config.absorption is None:
        reduced.append(f"absorption samples {absorption_eval.CPU_REDUCED.words} words")
    if reduced:
        print(f"l0eval: on CPU {'; '.join(reduced)}; --device cuda runs the full settings", file=sys.stderr)


def _probing(loaded, hook, names, saes, config, device, exclude_from_corpus, per_sae, details, baselines,
             progress) -> dict:
    excluded = sorted({*config.probe_exclude, *exclude_from_corpus})
    datasets = probe_data.choose_datasets(list(config.probe_datasets) if config.probe_datasets else None, device,
                                          excluded)
    ks = list(config.probe_ks)
    activations = probe_data.ensure_probe_activations(loaded, hook, datasets, device, progress)
    for index, sae in enumerate(saes):
        scores = sae_probes.probe_scores(sae, activations, hook, datasets, ks, config.seed, device)
        per_sae[index].update(sae_probes.family_means(scores, ks, "sparse_probing"))
        details[index]["sparse_probing"] = scores
    residual = sae_probes.probe_scores(sae_probes.ResidualChannels(), activations, hook, datasets, ks, config.seed,
                                       device)
    full_width = sae_probes.full_width_baseline(activations, hook, datasets, config.seed, device)
    baselines["residual_top_k"] = {**sae_probes.family_means(residual, ks, "sparse_probing"), "per_dataset": residual}
    baselines["residual_full_width"] = {
        **{f"sparse_probing_full_{name}": sum(d[name] for d in full_width.values()) / len(full_width)
           for name in sae_probes.SCORES.values()},
        "per_dataset": full_width}
    return {"protocol": "sae-probes (Kantamneni et al. 2025) run_sae_evals, setting 'normal', last-token "
                        "activations, latents scaled by their mean nonzero training activation, top-k by "
                        "|class-mean difference|, L1 logistic regression (saga, C by validation AUC); "
                        "sparse_probing_k{k} = mean test F1 over datasets (_acc, _auc: accuracy, AUC)",
            "library": "sae-probes", "version": importlib.metadata.version("sae-probes"),
            "setting": sae_probes.SETTING, "reg_type": sae_probes.REG_TYPE, "ks": ks, "datasets": datasets,
            "excluded_datasets": excluded,
            "dataset_choice": ("as requested" if config.probe_datasets else
                               "all sae-probes datasets" if device.startswith("cuda") else
                               "CPU subset (l0eval.downstream.probe_data.CPU_DATASETS)"),
            "baselines": {"residual_top_k": "the same procedure on residual channels (identity encoder)",
                          "residual_full_width": f"sae-probes baseline '{sae_probes.BASELINE_METHOD}' "
                                                 "(L2 logistic regression on all channels)"},
            "model_activations": {"cache_dir": str(activations.model_cache_path), "max_seq_len": probe_data.MAX_SEQ_LEN,
                                  "position": "last token", "bos": True}}


def _saebench_probing(loaded, hook, saes, config, device, excluded, per_sae, details, baselines) -> dict:
    setting = config.saebench_probing or (saebench_probing.SAEBenchProbingSetting() if device.startswith("cuda")
                                          else saebench_probing.CPU_SETTING)
    scores, residual, record = saebench_probing.run_protocol(loaded, hook, saes, setting, excluded, config.seed,
                                                             device)
    for index, per_dataset in enumerate(scores):
        per_sae[index].update(saebench_probing.family_means(per_dataset, setting.ks, "saebench_probing"))
        details[index]["saebench_probing"] = per_dataset
    baselines["saebench_residual_top_k"] = {**saebench_probing.family_means(residual, setting.ks, "saebench_probing"),
                                            "per_dataset": residual}
    return {"protocol": "SAEBench sparse_probing (sae-bench's tokenisation, BOS/PAD/EOS masking, mean pooling and "
                        "top-k probes with our model injected; deviations in l0eval/downstream/saebench_probing.py); "
                        "saebench_probing_k{k} = one-vs-rest top-k L2 logistic-regression test accuracy, mean over "
                        "classes then datasets",
            "library": "sae-bench", "version": importlib.metadata.version("sae-bench"), **record}


def _absorption(loaded, hook, names, saes, config, device, per_sae, details) -> dict:
    setting = config.absorption or (absorption_eval.FULL if device.startswith("cuda")
                                    else absorption_eval.CPU_REDUCED)
    results = absorption_eval.run_absorption(loaded, hook, list(zip(names, saes)), setting, config.seed, device)
    for index, result in enumerate(results):
        per_sae[index].update({key: value for key, value in result.items()
                               if key in ABSORPTION_COLUMNS})
        details[index]["absorption"] = {key: value for key, value in result.items()
                                        if key not in ABSORPTION_SCORES}
    return {"protocol": "SAEBench absorption_first_letter (sae-bench's k-sparse probing and feature-absorption "
                        "functions with our model injected; deviations in l0eval/downstream/absorption.py); "
                        "absorption_fraction = mean_absorption_fraction_score, full_absorption = "
                        "mean_full_absorption_score, both means over letters whose ground-truth probe F1 > "
                        "min_gt_probe_f1",
            "library": "sae-bench", "version": importlib.metadata.version("sae-bench"),
            "setting": {**asdict(setting), "name": setting.name},
            "sae_bench_layer": absorption_eval.resid_post_layer(hook),
            "prompt_template": absorption_eval.PROMPT_TEMPLATE, "prompt_token_pos": absorption_eval.PROMPT_TOKEN_POS}
