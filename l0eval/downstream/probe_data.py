"""Model activations for the sae-probes datasets, computed once per (model, hook, dataset) and written
where sae-probes reads them, so every SAE of a family and the residual baseline reuse them.

sae-probes would build these itself with a TransformerLens ``HookedTransformer`` downloaded from the
hub. We compute the same thing with our transformers model (``l0eval.activations``): each prompt is
tokenised with BOS first (TransformerLens's tokenizer adds it), cut from the left to 1024 tokens, and
the residual stream at the hook is read at the last token. The tensors are saved in sae-probes' own
layout (``model_activations_{model}/{dataset}_{hook}.pt``), so its loaders find them and never load a
model. The folder is keyed by the model's name and weights revision, so other weights never reuse it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from l0eval import atomic
from l0eval.activations.llm.hooks import residual_activations
from l0eval.errors import L0EvalError
from l0eval.saes import store

# sae-probes' _process_activations: max_seq_len 1024, truncation_side "left", last token read
MAX_SEQ_LEN = 1024
TOKEN_BUDGET = 16_384  # tokens per model batch (prompts are batched by length to limit padding)

# The CPU default: a documented subset of the 113 binary sae-probes datasets, small enough for a shared CPU
# (~60k prompt tokens in all), spanning entity attributes (gender, country, sport), geography, a reasoning
# context type and a news topic. The full list is the default on GPU.
CPU_DATASETS = ("5_hist_fig_ismale", "119_us_state_TX", "156_athlete_sport_baseball", "124_world_country_United_States",
                "133_context_type_Causality", "24_headline_isiran")


def all_datasets() -> list[str]:
    """Every binary sae-probes dataset that ships in its wheel."""
    from sae_probes.utils_data import get_numbered_binary_tags

    return get_numbered_binary_tags()


def choose_datasets(requested: list[str] | None, device: str, exclude: list[str]) -> list[str]:
    """The datasets to probe: ``requested``, else all of them on GPU and ``CPU_DATASETS`` on CPU, minus ``exclude``."""
    known = all_datasets()
    chosen = list(requested) if requested else (known if device.startswith("cuda") else list(CPU_DATASETS))
    unknown = [name for name in [*chosen, *exclude] if name not in known]
    if unknown:
        raise L0EvalError(f"unknown sae-probes dataset(s) {', '.join(unknown)}; known ones look like "
                          f"{', '.join(known[:3])}, ...")
    kept = [name for name in chosen if name not in exclude]
    if not kept:
        raise L0EvalError("no sae-probes dataset is left to probe after the exclusions")
    return kept


def datasets_in_corpus(corpus: str) -> list[str]:
    """sae-probes datasets whose name appears in an SAE-training corpus description (they must not be probed:
    the SAEs have seen their texts)."""
    return [name for name in all_datasets() if name in corpus]


@dataclass(frozen=True)
class ProbeActivations:
    """Where sae-probes finds the model activations (its ``model_cache_path``) and under which model name."""

    model_cache_path: Path
    model_name: str

    def path(self, dataset: str, hook: str) -> Path:
        return self.model_cache_path / f"model_activations_{self.model_name}" / f"{dataset}_{hook}.pt"


def ensure_probe_activations(loaded, hook: str, datasets: list[str], device: str,
                             progress: bool = True) -> ProbeActivations:
    """Compute the missing (dataset, hook) activation files for ``loaded`` (a ``LoadedModel``)."""
    from sae_probes.utils_data import read_numbered_dataset_df

    key = {"model": loaded.name, "revision": loaded.revision, "max_seq_len": MAX_SEQ_LEN, "bos": True}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    target = ProbeActivations(store.cache_root() / "sae_probes" / digest, loaded.name.replace("/", "--"))
    for dataset in tqdm(datasets, desc=f"probe activations {hook}", disable=not progress):
        path = target.path(dataset, hook)
        if path.is_file():
            continue
        prompts = read_numbered_dataset_df(dataset)["prompt"].tolist()
        acts = last_token_activations(loaded.model, loaded.tokenizer, prompts, hook, device)
        atomic.write_json(path.parent.parent / "key.json", key)
        atomic.write_torch(path, acts)
    return target


@torch.no_grad()
def last_token_activations(model, tokenizer, texts: list[str], hook: str, device: str,
                           max_seq_len: int = MAX_SEQ_LEN, token_budget: int = TOKEN_BUDGET) -> torch.Tensor:
    """[len(texts), d_model] float32: the residual stream at ``hook`` on each text's last token."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    sequences = [(bos + tokenizer(text, add_special_tokens=False)["input_ids"])[-max_seq_len:] for text in texts]
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    out: list[torch.Tensor | None] = [None] * len(sequences)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    start = 0
    while start < len(order):
        longest = len(sequences[order[start]])
        stop = start + 1
        while stop < len(order) and (stop - start + 1) * len(sequences[order[stop]]) <= token_budget:
            stop += 1
            longest = len(sequences[order[stop - 1]])
        batch = order[start:stop]
        ids = torch.full((len(batch), longest), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, index in enumerate(batch):  # right padding: a causal model's last real token never sees it
            ids[row, :len(sequences[index])] = torch.tensor(sequences[index])
            mask[row, :len(sequences[index])] = 1
        acts = residual_activations(model, ids.to(device), hook, attention_mask=mask.to(device))
        for row, index in enumerate(batch):
            out[index] = acts[row, len(sequences[index]) - 1].float().cpu()
        start = stop
    return torch.stack(out)
