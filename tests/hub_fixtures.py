"""Build small SAE repos, in the exact on-disk formats of each release, inside a real huggingface_hub cache.

The cache layout is huggingface_hub's own: ``models--{org}--{name}/blobs/<sha256>``, snapshot files
as symlinks into blobs, ``refs/main`` naming the snapshot. Loading then goes through the real
``hf_hub_download``/``snapshot_download`` code with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def add_repo_files(cache_dir: Path, repo_id: str, files: dict[str, bytes], repo_type: str = "model") -> Path:
    """Write ``files`` (repo path -> content) into the cache as snapshot ``COMMIT`` of ``repo_id`` (a model repo,
    or a ``repo_type="dataset"`` repo: ``datasets--{org}--{name}``)."""
    repo_dir = cache_dir / f"{repo_type}s--{repo_id.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    for relative, content in files.items():
        blob = repo_dir / "blobs" / hashlib.sha256(content).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        target = repo_dir / "snapshots" / COMMIT / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            target.unlink()
        os.symlink(os.path.relpath(blob, target.parent), target)
    return repo_dir / "snapshots" / COMMIT


def torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def json_bytes(obj) -> bytes:
    return json.dumps(obj).encode()


def random_weights(d_in: int, d_sae: int, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    w_dec = torch.randn(d_sae, d_in, generator=generator)
    w_dec = w_dec / w_dec.norm(dim=1, keepdim=True)
    return {"W_enc": (w_dec.T + 0.05 * torch.randn(d_in, d_sae, generator=generator)).contiguous(),
            "b_enc": 0.1 * torch.randn(d_sae, generator=generator) - 0.05,
            "W_dec": w_dec,
            "b_dec": 0.1 * torch.randn(d_in, generator=generator)}


# dictionary_learning's state-dict layouts, one per dict_class (nn.Linear weights are [out, in]).
def dictionary_learning_state(dict_class: str, weights: dict[str, torch.Tensor], k: int = 4,
                              threshold: float = 0.2) -> dict[str, torch.Tensor]:
    d_sae = weights["b_enc"].shape[0]
    linear = {"encoder.weight": weights["W_enc"].T.contiguous(), "encoder.bias": weights["b_enc"],
              "decoder.weight": weights["W_dec"].T.contiguous()}
    if dict_class == "AutoEncoder":
        return {**linear, "bias": weights["b_dec"]}
    if dict_class == "AutoEncoderTopK":
        return {**linear, "b_dec": weights["b_dec"], "k": torch.tensor(k), "threshold": torch.tensor(threshold)}
    if dict_class == "BatchTopKSAE":
        return {**linear, "b_dec": weights["b_dec"], "k": torch.tensor(k), "threshold": torch.tensor(threshold)}
    if dict_class == "MatryoshkaBatchTopKSAE":
        return {**weights, "k": torch.tensor(k), "threshold": torch.tensor(threshold),
                "group_sizes": torch.tensor([d_sae // 2, d_sae - d_sae // 2])}
    if dict_class == "JumpReluAutoEncoder":
        return {**weights, "threshold": torch.full((d_sae,), threshold)}
    if dict_class == "GatedAutoEncoder":
        return {"encoder.weight": weights["W_enc"].T.contiguous(), "gate_bias": weights["b_enc"],
                "r_mag": 0.1 * torch.ones(d_sae), "mag_bias": weights["b_enc"] + 0.01,
                "decoder.weight": weights["W_dec"].T.contiguous(), "decoder_bias": weights["b_dec"]}
    raise ValueError(dict_class)


TRAINER_CLASSES = {"AutoEncoder": "StandardTrainerAprilUpdate", "AutoEncoderTopK": "TopKTrainer",
                   "BatchTopKSAE": "BatchTopKTrainer", "MatryoshkaBatchTopKSAE": "MatryoshkaBatchTopKTrainer",
                   "JumpReluAutoEncoder": "JumpReluTrainer", "GatedAutoEncoder": "GatedSAETrainer"}


def dictionary_learning_files(folder: str, dict_class: str, d_in: int, d_sae: int, k: int = 4,
                              seed: int = 0, layer: int = 3) -> dict[str, bytes]:
    """A SAEBench trainer folder: ae.pt + config.json (+ eval_results.json)."""
    state = dictionary_learning_state(dict_class, random_weights(d_in, d_sae, seed), k=k)
    trainer = {"trainer_class": TRAINER_CLASSES[dict_class], "dict_class": dict_class, "layer": layer,
               "lm_name": "EleutherAI/pythia-70m-deduped", "activation_dim": d_in, "dict_size": d_sae,
               "k": k, "lr": 3e-4, "seed": seed}
    return {f"{folder}/ae.pt": torch_bytes(state),
            f"{folder}/config.json": json_bytes({"trainer": trainer, "buffer": {"ctx_len": 128}}),
            f"{folder}/eval_results.json": json_bytes({"l0": float(k), "frac_variance_explained": 0.9})}


def gemma_scope_files(folder: str, d_in: int, d_sae: int, seed: int = 0, threshold: float = 0.1) -> dict[str, bytes]:
    weights = random_weights(d_in, d_sae, seed)
    buffer = io.BytesIO()
    np.savez(buffer, W_enc=weights["W_enc"].numpy(), W_dec=weights["W_dec"].numpy(),
             b_enc=weights["b_enc"].numpy(), b_dec=weights["b_dec"].numpy(),
             threshold=np.full(d_sae, threshold, dtype=np.float32))
    return {f"{folder}/params.npz": buffer.getvalue()}


def sae_lens_files(folder: str, d_in: int, d_sae: int, seed: int = 0, architecture: str = "standard",
                   extra_cfg: dict | None = None) -> dict[str, bytes]:
    weights = random_weights(d_in, d_sae, seed)
    cfg = {"d_in": d_in, "d_sae": d_sae, "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": True,
           "normalize_activations": "none", "architecture": architecture,
           "metadata": {"model_name": "tiny", "hook_name": "blocks.0.hook_resid_post"}, **(extra_cfg or {})}
    return {f"{folder}/cfg.json": json_bytes(cfg), f"{folder}/sae_weights.safetensors": safetensors_bytes(weights)}


def folder_files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by its relative path (a saved model or tokenizer, to put in a hub repo)."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


# A registry family's whole run from the hub cache: its SAEs at their real repo ids and paths, a tiny model of
# the registry model's architecture class and a corpus dataset, each in its own repo.
FIXTURE_MODEL = "fixture-org/tiny-pythia"
FIXTURE_CORPUS = "fixture-org/tiny-corpus"
# `--activations` that point the family's model profile at them, at sizes that run in seconds
FIXTURE_OVERRIDES = [f"model={FIXTURE_MODEL}", f"dataset={FIXTURE_CORPUS}", "dataset_revision=main",
                     "dataset_files=[data/train.jsonl]", "context=16", "sequences=12", "ce_sequences=4",
                     "batch_sequences=4"]


def tiny_gpt_neox_files(tmp: Path, hidden_size: int, layers: int) -> dict[str, bytes]:
    """A random GPTNeoX (Pythia's architecture) with a real word-level tokenizer, as saved files."""
    from test_activations import SMALL, word_tokenizer
    from transformers import AutoModelForCausalLM, GPTNeoXConfig

    torch.manual_seed(0)
    config = GPTNeoXConfig(num_hidden_layers=layers, hidden_size=hidden_size, num_attention_heads=4,
                           intermediate_size=32, max_position_embeddings=64, **SMALL)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp)
    word_tokenizer().save_pretrained(tmp)
    return folder_files(tmp)


def registry_family_hub(cache_dir: Path, family, hidden_size: int = 768) -> None:
    """``family`` (a registry family of dictionary_learning TopK trainers) runnable offline from ``cache_dir``
    with ``FIXTURE_OVERRIDES``: SAEs as the registry entry declares them (width, k), the model (enough layers
    for the family's hook), the corpus."""
    import tempfile

    from test_activations import TEXTS

    saes = family.members
    for index, member in enumerate(saes.saes):
        add_repo_files(cache_dir, member.repo_id,
                       dictionary_learning_files(member.path, "AutoEncoderTopK", saes.d_in, saes.width,
                                                 k=int(member.nominal_l0), seed=index, layer=saes.layer))
    with tempfile.TemporaryDirectory() as folder:
        add_repo_files(cache_dir, FIXTURE_MODEL, tiny_gpt_neox_files(Path(folder), hidden_size, saes.layer + 1))
    corpus = "".join(json.dumps({"text": text}) + "\n" for text in TEXTS)
    add_repo_files(cache_dir, FIXTURE_CORPUS, {"data/train.jsonl": corpus.encode()}, repo_type="dataset")


# --- SAEBench's published results (adamkarvonen/sae_bench_results_0125), built with sae-bench's output classes ---

def _filled(cls, **values):
    """An instance of a sae-bench metrics class: the given values, 0.5 (counts: 1) for every other required field."""
    required = {name: 1 if info.annotation is int else 0.5
                for name, info in cls.__pydantic_fields__.items() if info.is_required()}
    return cls(**{**required, **values})


def saebench_result_files(unique_id: str, release: str, cfg: dict, *, l0: float, explained_variance: float,
                          mse: float, probing: dict[str, float], absorption: dict[str, float],
                          jan_2025: bool = True, sae_probes: dict[str, float] | None = None) -> dict[str, bytes]:
    """One SAE's core, sparse_probing and absorption files as SAEBench published them: the path
    ``{eval_type}/{release}/{file}`` with sae-bench's file name shortened as its export notebook did, the JSON
    from the output classes (``sae_lens_release_id`` = SAEBench's unique name, ``sae_lens_id`` = custom_sae).
    ``jan_2025``: core in the Jan-25 form (no ``explained_variance_legacy``, per-latent details removed);
    ``sae_probes``: also a sparse_probing_sae_probes file (dataset -> top-1 F1; SAEBench added it in Oct 2025)."""
    from dataclasses import asdict

    from sae_bench.evals.absorption.eval_config import AbsorptionEvalConfig
    from sae_bench.evals.absorption.eval_output import (
        AbsorptionEvalOutput,
        AbsorptionMeanMetrics,
        AbsorptionMetricCategories,
        AbsorptionResultDetail,
    )
    from sae_bench.evals.core import eval_output as core
    from sae_bench.evals.core.eval_config import CoreEvalConfig
    from sae_bench.evals.sparse_probing import eval_output as probing_output
    from sae_bench.evals.sparse_probing.eval_config import SparseProbingEvalConfig
    from sae_bench.sae_bench_utils.general_utils import get_results_filepath

    common = {"eval_id": f"id-{unique_id}", "datetime_epoch_millis": 1737600000000, "sae_bench_commit_hash": "abc1234",
              "sae_lens_id": "custom_sae", "sae_lens_release_id": unique_id, "sae_lens_version": "5.3.0",
              "sae_cfg_dict": cfg}
    categories = core.CoreMetricCategories(**{
        name: _filled(info.annotation) for name, info in core.CoreMetricCategories.__pydantic_fields__.items()})
    categories.sparsity.l0 = l0
    categories.reconstruction_quality.explained_variance_legacy = explained_variance
    categories.reconstruction_quality.explained_variance = explained_variance
    categories.reconstruction_quality.mse = mse
    core_json = asdict(core.CoreEvalOutput(eval_config=CoreEvalConfig(model_name=cfg["model_name"]),
                                           eval_result_metrics=categories, **common))
    if jan_2025:
        del core_json["eval_result_metrics"]["reconstruction_quality"]["explained_variance_legacy"]
        del core_json["eval_result_details"]
    probing_json = asdict(probing_output.SparseProbingEvalOutput(
        eval_config=SparseProbingEvalConfig(model_name=cfg["model_name"], llm_dtype="float32", llm_batch_size=8),
        eval_result_metrics=probing_output.SparseProbingMetricCategories(
            llm=_filled(probing_output.SparseProbingLlmMetrics),
            sae=_filled(probing_output.SparseProbingSaeMetrics,
                        sae_top_1_test_accuracy=sum(probing.values()) / len(probing))),
        eval_result_details=[_filled(probing_output.SparseProbingResultDetail, dataset_name=name,
                                     sae_top_1_test_accuracy=value) for name, value in probing.items()],
        **common))
    absorption_json = asdict(AbsorptionEvalOutput(
        eval_config=AbsorptionEvalConfig(model_name=cfg["model_name"]),
        eval_result_metrics=AbsorptionMetricCategories(mean=_filled(
            AbsorptionMeanMetrics, mean_absorption_fraction_score=sum(absorption.values()) / len(absorption),
            mean_full_absorption_score=0.1)),
        eval_result_details=[AbsorptionResultDetail(first_letter=letter, mean_absorption_fraction=value,
                                                    full_absorption_rate=0.1, num_full_absorption=1,
                                                    num_probe_true_positives=10, num_split_features=1)
                             for letter, value in absorption.items()],
        **common))
    payloads = [("core", core_json), ("sparse_probing", probing_json), ("absorption", absorption_json)]
    if sae_probes is not None:
        payloads.append(("sparse_probing_sae_probes", _sae_probes_json(cfg, common, sae_probes)))
    name = Path(get_results_filepath("", unique_id, "custom_sae")).name.replace("custom_sae_", "")
    return {f"{eval_type}/{release}/{name}": json_bytes(payload) for eval_type, payload in payloads}


def _sae_probes_json(cfg: dict, common: dict, f1_by_dataset: dict[str, float]) -> dict:
    from dataclasses import asdict

    from sae_bench.evals.sparse_probing_sae_probes import eval_output as sae_probes
    from sae_bench.evals.sparse_probing_sae_probes.eval_config import SparseProbingSaeProbesEvalConfig

    mean = sum(f1_by_dataset.values()) / len(f1_by_dataset)
    return asdict(sae_probes.SparseProbingSaeProbesEvalOutput(
        eval_config=SparseProbingSaeProbesEvalConfig(model_name=cfg["model_name"]),
        eval_result_metrics=sae_probes.SaeProbesMetricCategories(
            llm=sae_probes.SaeProbesLlmMetrics(), sae=sae_probes.SaeProbesSaeMetrics(sae_top_1_test_f1=mean)),
        eval_result_details=[sae_probes.SaeProbesResultDetail(dataset_name=name, sae_top_1_test_f1=value)
                             for name, value in f1_by_dataset.items()],
        **common))
