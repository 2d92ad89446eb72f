"""The paper's sparse probing: sae-probes (Kantamneni et al. 2025), "normal" setting, run through its own
``run_sae_evals`` as the paper called it (``reg_type="l1"``, ``ks=[1, 16]``).

Per dataset sae-probes encodes the last-token activations, divides each latent by its mean nonzero training
activation, ranks latents by |mean(class 1) - mean(class 0)|, keeps the top k, and fits an L1 logistic
regression (saga; C from logspace(5, -5, 10) by validation AUC). It reports test F1 (weighted), accuracy
and AUC; the family score is the mean over datasets per k.

The residual-stream baseline is the same procedure on the residual channels themselves (an identity
encoder: top-k channels, L1 logistic regression), plus sae-probes' own full-width baseline (``logreg``,
L2 logistic regression on all d_model channels).
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from l0eval.downstream import seed_everything
from l0eval.downstream.probe_data import ProbeActivations

SETTING = "normal"
REG_TYPE = "l1"
BASELINE_METHOD = "logreg"
SCORES = {"test_f1": "f1", "test_acc": "acc", "test_auc": "auc"}


class ResidualChannels:
    """An identity "SAE" for sae-probes: its latents are the residual channels, so the top-k procedure
    runs on the model's own activations (the residual baseline)."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x


def probe_scores(encoder, activations: ProbeActivations, hook: str, datasets: list[str], ks: list[int],
                 seed: int, device: str = "cpu", verbose: bool = False) -> dict[str, dict[str, dict]]:
    """sae-probes scores {dataset: {k: {"f1", "acc", "auc", "val_auc"}}} for one encoder.

    sae-probes names its result files by (model, setting, dataset, hook, reg type), never by SAE, and
    skips any dataset whose file exists: with a shared results folder the second SAE at this hook would
    silently get the first one's scores. Each call therefore writes into its own fresh temporary folder.
    """
    from sae_probes import run_sae_evals
    from sae_probes.run_sae_evals import get_save_metrics_path

    with tempfile.TemporaryDirectory(prefix="l0eval-sae-probes-") as results, _quiet(verbose):
        seed_everything(seed)
        run_sae_evals(sae=encoder, model_name=activations.model_name, hook_name=hook, reg_type=REG_TYPE,
                      setting=SETTING, ks=list(ks), results_path=results,
                      model_cache_path=activations.model_cache_path, datasets=list(datasets), device=device,
                      seed=seed)
        scores = {}
        for dataset in datasets:
            path = get_save_metrics_path(dataset=dataset, hook_name=hook, reg_type=REG_TYPE,
                                         model_name=activations.model_name, sae_results_path=results, setting=SETTING)
            scores[dataset] = {str(entry["k"]): _scores(entry) for entry in json.loads(Path(path).read_text())}
    return scores


def full_width_baseline(activations: ProbeActivations, hook: str, datasets: list[str], seed: int,
                        device: str = "cpu", verbose: bool = False) -> dict[str, dict]:
    """sae-probes' full-width residual baseline (L2 logistic regression on every channel) per dataset."""
    from sae_probes import run_baseline_evals
    from sae_probes.run_baselines import get_baseline_save_path

    with tempfile.TemporaryDirectory(prefix="l0eval-sae-probes-") as results, _quiet(verbose):
        seed_everything(seed)
        run_baseline_evals(model_name=activations.model_name, hook_name=hook, setting=SETTING,
                           method=BASELINE_METHOD, results_path=results,
                           model_cache_path=activations.model_cache_path, datasets=list(datasets), device=device,
                           seed=seed)
        return {dataset: _scores(json.loads(get_baseline_save_path(
                    dataset=dataset, hook_name=hook, method_name=BASELINE_METHOD, model_name=activations.model_name,
                    results_path=results, setting=SETTING).read_text())[0])
                for dataset in datasets}


def family_means(scores: dict[str, dict[str, dict]], ks: list[int], prefix: str) -> dict[str, float]:
    """Flat metrics: ``{prefix}_k{k}`` = mean test F1 over datasets, plus ``_acc`` and ``_auc`` variants."""
    flat = {}
    for k in ks:
        for name in SCORES.values():
            values = [per_k[str(k)][name] for per_k in scores.values()]
            flat[f"{prefix}_k{k}" if name == "f1" else f"{prefix}_k{k}_{name}"] = float(np.mean(values))
    return flat


def _scores(entry: dict) -> dict:
    return {**{short: float(entry[long]) for long, short in SCORES.items()}, "val_auc": float(entry["val_auc"])}


@contextlib.contextmanager
def _quiet(verbose: bool):
    """sae-probes prints a line per dataset and file; keep it off our stdout unless asked. scikit-learn >= 1.8
    warns on every fit that ``penalty`` is deprecated; it still honours ``penalty="l1"`` (checked in
    LogisticRegression.fit), so those warnings are silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*penalty.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message="Inconsistent values: penalty", category=UserWarning)
        if verbose:
            yield
            return
        with contextlib.redirect_stdout(io.StringIO()):
            yield
