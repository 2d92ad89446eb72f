"""SAEBench's ``sparse_probing`` protocol through sae-bench's own functions, with our model and activations.

Protocol (sae-bench ``evals/sparse_probing``): texts padded/truncated to 128 tokens with the tokenizer
(``dataset_utils.tokenize_data_dictionary``); residual activations at the hook with BOS/PAD/EOS positions
zeroed (``activation_collection.get_bos_pad_eos_mask``); SAE latents per token, mean-pooled over the kept
positions (``get_sae_meaned_activations``; the residual baseline: ``create_meaned_model_activations``);
one-vs-rest per class, top-k dimensions by |mean difference| on the training set, sklearn L2 logistic
regression (``probe_training.train_probe_on_activations``); accuracy averaged over classes, then datasets.

What differs from ``run_eval``, and why:
- the model pass is ours (``l0eval.activations.llm.hooks``; sae-bench loads a ``HookedTransformer`` from the hub).
  Positions after a batch's longest text are not computed: they are padding, zeroed and ignored by the pooling;
- datasets: SAEBench's come from the hub. Each runs when it is in the local HF cache; otherwise the offline
  sae-probes datasets stand in, two classes each (label 0 / label 1), and ``run.downstream`` records which ran;
- the seed: sae-bench samples negatives with the global torch generator and never seeds it here; we seed torch
  before every probe so the same seed gives the same scores;
- the full-width probe (``sae_test_accuracy``) is not run: sae-bench trains it on the GPU and reports the best
  *test* accuracy over epochs, which is optimistic; only the top-k probes are reported.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from l0eval import atomic
from l0eval.activations.llm.hooks import residual_activations
from l0eval.errors import first_line
from l0eval.saes import store

K_VALUES = (1, 2, 5, 10, 20, 50)
CONTEXT = 128
SAE_BATCH_SIZE = 125  # sae-bench's sae_batch_size default
# offline stand-ins: short-prompt sae-probes datasets of different kinds (entity, geography, news topic); a few
# only, because token-level activations (up to 128 x d_model per text) are cached for each
FALLBACK_DATASETS = ("5_hist_fig_ismale", "124_world_country_United_States", "24_headline_isiran")


@dataclass(frozen=True)
class SAEBenchProbingSetting:
    train_per_class: int = 2000  # SAEBench: 4000 train / 1000 test texts per one-vs-rest task
    test_per_class: int = 500
    fallback_datasets: tuple[str, ...] = FALLBACK_DATASETS
    ks: tuple[int, ...] = K_VALUES


CPU_SETTING = SAEBenchProbingSetting(train_per_class=200, test_per_class=100)


def hub_datasets() -> list[str]:
    from sae_bench.evals.sparse_probing.eval_config import SparseProbingEvalConfig

    return list(SparseProbingEvalConfig().dataset_names)


def cached_on_hub(dataset: str) -> bool:
    """Whether the HF hub cache holds this dataset (SAEBench's ``bias_in_bios_class_setN`` share one repo)."""
    from huggingface_hub import constants

    repo = dataset.split("_class_set")[0]
    return (Path(constants.HF_HUB_CACHE) / f"datasets--{repo.replace('/', '--')}").is_dir()


def prefetch_hub_datasets(seed: int = 42) -> Iterator[str]:
    """Load each of SAEBench's probing datasets once through sae-bench's own loader, at the GPU setting's sizes,
    so that the hub and datasets caches hold what a later (offline) run reads; one line each."""
    from huggingface_hub import constants
    from sae_bench.sae_bench_utils import dataset_utils

    setting = SAEBenchProbingSetting()
    for name in hub_datasets():
        if cached_on_hub(name):
            yield f"probing dataset {name}: already cached"
            continue
        if constants.is_offline_mode():
            yield f"probing dataset {name}: not fetched (HF_HUB_OFFLINE is set)"
            continue
        try:
            dataset_utils.get_multi_label_train_test_data(name, 2 * setting.train_per_class,
                                                          2 * setting.test_per_class, seed)
        except Exception as exc:  # noqa: BLE001 - not fatal: a run probes the cached ones (or sae-probes' offline)
            yield (f"probing dataset {name}: not fetched ({type(exc).__name__}: {first_line(exc)}); runs probe the "
                   "cached ones, or sae-probes' offline datasets when none is")
            continue
        yield f"probing dataset {name}: fetched"


def class_texts(setting: SAEBenchProbingSetting, exclude: list[str], seed: int) -> tuple[dict, list[str]]:
    """{dataset: (train {class: texts}, test {class: texts})} and the names of hub datasets that were missing."""
    from sae_bench.sae_bench_utils import dataset_info, dataset_utils

    chosen, missing = {}, []
    for name in hub_datasets():
        if not cached_on_hub(name):
            missing.append(name)
            continue
        train, test = dataset_utils.get_multi_label_train_test_data(
            name, 2 * setting.train_per_class, 2 * setting.test_per_class, seed)
        classes = dataset_info.chosen_classes_per_dataset[name]
        chosen[name] = (dataset_utils.filter_dataset(train, classes), dataset_utils.filter_dataset(test, classes))
    if not chosen:
        chosen = {name: _sae_probes_classes(name, setting, seed) for name in setting.fallback_datasets
                  if name not in exclude}
    return chosen, missing


def _sae_probes_classes(dataset: str, setting: SAEBenchProbingSetting, seed: int) -> tuple[dict, dict]:
    """A binary sae-probes dataset as two balanced classes, split into train and test with ``seed``."""
    from sae_probes.utils_data import read_numbered_dataset_df

    frame = read_numbered_dataset_df(dataset)
    rng = np.random.default_rng(seed)
    groups = {str(label): rng.permutation(group["prompt"].tolist()).tolist()
              for label, group in frame.groupby("target")}
    per_class = min(min(map(len, groups.values())), setting.train_per_class + setting.test_per_class)
    n_test = max(1, round(per_class * setting.test_per_class / (setting.train_per_class + setting.test_per_class)))
    return ({label: texts[n_test:per_class] for label, texts in groups.items()},
            {label: texts[:n_test] for label, texts in groups.items()})


def token_activations(loaded, hook: str, texts: list[str], device: str, batch_size: int = 32) -> torch.Tensor:
    """[len(texts), L, d_model] float16: the residual stream with BOS/PAD/EOS zeroed, L = the longest text
    (at most 128 tokens); positions after it are padding, which sae-bench zeroes and never pools."""
    from sae_bench.sae_bench_utils.activation_collection import get_bos_pad_eos_mask
    from sae_bench.sae_bench_utils.dataset_utils import tokenize_data_dictionary

    ids = tokenize_data_dictionary({"texts": texts}, loaded.tokenizer, CONTEXT, "cpu")["texts"]["input_ids"]
    keep = get_bos_pad_eos_mask(ids, loaded.tokenizer)
    length = int(keep.any(dim=0).nonzero().max()) + 1 if keep.any() else 1
    ids, keep = ids[:, :length], keep[:, :length]
    parts = []
    for start in range(0, len(ids), batch_size):
        acts = residual_activations(loaded.model, ids[start:start + batch_size].to(device), hook)
        parts.append((acts.float().cpu() * keep[start:start + batch_size, :, None]).half())
    return torch.cat(parts)


def dataset_activations(loaded, hook: str, name: str, splits: tuple[dict, dict], device: str) -> tuple[dict, dict]:
    """Train and test {class: [n, L, d_model]} activations, cached per (model, hook, dataset, texts)."""
    key = {"model": loaded.name, "revision": loaded.revision, "hook": hook, "dataset": name, "context": CONTEXT,
           "texts": hashlib.sha256(json.dumps(splits, sort_keys=True).encode()).hexdigest()}
    path = (store.cache_root() / "saebench_probing" /
            f"{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]}.pt")
    if not path.is_file():
        computed = [{label: token_activations(loaded, hook, texts, device) for label, texts in split.items()}
                    for split in splits]
        atomic.write_torch(path, {"key": key, "train": computed[0], "test": computed[1]})
    stored = torch.load(path)
    return stored["train"], stored["test"]


def _as_float(acts: dict, device: str | torch.device = "cpu") -> dict:
    return {label: tensor.to(device, torch.float32) for label, tensor in acts.items()}


def top_k_accuracies(train: dict, test: dict, ks: tuple[int, ...], seed: int) -> dict[str, float]:
    """Mean over classes of the one-vs-rest top-k probe's test accuracy, per k (sae-bench's probes)."""
    from sae_bench.evals.sparse_probing.probe_training import train_probe_on_activations

    width = next(iter(train.values())).shape[1]
    accuracies = {}
    for k in ks:
        torch.manual_seed(seed)  # sae-bench draws the negatives with the global generator
        with contextlib.redirect_stdout(io.StringIO()), _no_jaxtyping_shape_memo():
            _, per_class = train_probe_on_activations(train, test, select_top_k=min(k, width))
        accuracies[str(k)] = float(np.mean(list(per_class.values())))
    return accuracies


@contextlib.contextmanager
def _no_jaxtyping_shape_memo():
    """With jaxtyping 0.3, ``train_probe_on_activations`` (annotated with per-class sizes) shares its dimension
    names with the nested ``train_sklearn_probe`` (positives + negatives, twice as many), so every call fails
    its shape check whatever the data. jaxtyping's checks are switched off for this call only; beartype still
    checks the types."""
    from jaxtyping import config

    previous = config.jaxtyping_disable
    config.update("jaxtyping_disable", True)
    try:
        yield
    finally:
        config.update("jaxtyping_disable", previous)


def meaned_residual(acts: dict) -> dict:
    from sae_bench.sae_bench_utils.activation_collection import create_meaned_model_activations

    return create_meaned_model_activations(_as_float(acts))


@torch.no_grad()
def meaned_sae(acts: dict, sae) -> dict:
    from sae_bench.sae_bench_utils.activation_collection import get_sae_meaned_activations

    return get_sae_meaned_activations(_as_float(acts, sae.W_dec.device), sae, SAE_BATCH_SIZE)


def run_protocol(loaded, hook: str, saes: list, setting: SAEBenchProbingSetting, exclude: list[str], seed: int,
                 device: str) -> tuple[list[dict], dict, dict]:
    """Per SAE {dataset: {k: accuracy}}, the residual baseline in the same form, and the record of what ran.
    One dataset's activations are held at a time and shared by the baseline and every SAE."""
    texts, missing = class_texts(setting, exclude, seed)
    per_sae: list[dict] = [{} for _ in saes]
    residual = {}
    for name, splits in texts.items():
        train, test = dataset_activations(loaded, hook, name, splits, device)
        residual[name] = top_k_accuracies(meaned_residual(train), meaned_residual(test), setting.ks, seed)
        for index, sae in enumerate(saes):
            per_sae[index][name] = top_k_accuracies(meaned_sae(train, sae), meaned_sae(test, sae), setting.ks, seed)
    fallback = bool(missing) and len(missing) == len(hub_datasets())
    record = {"datasets": list(texts), "source": "sae-probes datasets (offline fallback)" if fallback else "hub cache",
              "hub_datasets_missing": missing, "train_per_class": setting.train_per_class,
              "test_per_class": setting.test_per_class, "ks": list(setting.ks), "context": CONTEXT}
    return per_sae, residual, record


def family_means(scores: dict[str, dict[str, float]], ks: tuple[int, ...], prefix: str) -> dict[str, float]:
    """``{prefix}_k{k}``: mean top-k test accuracy over datasets."""
    return {f"{prefix}_k{k}": float(np.mean([per_k[str(k)] for per_k in scores.values()])) for k in ks}
