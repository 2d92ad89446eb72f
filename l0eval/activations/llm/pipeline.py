"""One model pass per family: compute (or reuse) the activation cache an LLM activation spec asks for."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterator

import torch
from filelock import FileLock

from l0eval.activations.llm.activation_cache import ActivationCache, CacheKey, corpus_too_short, fill_cache
from l0eval.activations.llm.batching import auto_forward_batch
from l0eval.activations.llm.hooks import parse_hook, residual_activations
from l0eval.activations.llm.models import LoadedModel, load_model
from l0eval.activations.llm.text import hub_file_texts, hub_texts, local_texts, sae_probes_texts, token_sequences
from l0eval.family.llm_spec import LLMActivationSpec
from l0eval.saes import store


def cache_key(spec: LLMActivationSpec, revision: str) -> CacheKey:
    return CacheKey(model=spec.model, revision=revision, hook=spec.hook, dataset=spec.corpus,
                    context=spec.context, n_sequences=spec.sequences, dtype=spec.dtype,
                    prepend_bos=spec.prepend_bos, shard_sequences=spec.batch_sequences,
                    model_dtype=spec.model_dtype)


def activation_cache(spec: LLMActivationSpec, device: str = "cpu", progress: bool = True,
                     check_model: Callable[[LoadedModel], None] | None = None) -> tuple[LoadedModel, ActivationCache]:
    """The model and the cache for ``spec`` under ``$L0EVAL_CACHE/activations/``, filled if missing or unfinished.

    The folder name hashes the whole key, so a different request never lands in the same folder; the
    manifest check inside ``ActivationCache`` guards against anything that slipped through anyway.
    ``check_model`` refuses a model that does not fit (its width against the SAEs') before anything is written;
    a new cache's corpus is counted first, so a corpus too short for it is said before the model pass.
    """
    parse_hook(spec.hook)  # a malformed hook is reported before the model loads
    loaded = load_model(spec.model, dtype=spec.model_dtype, device=device, revision=spec.revision, progress=progress)
    if check_model is not None:
        check_model(loaded)
    key = cache_key(spec, loaded.revision)
    digest = hashlib.sha256(json.dumps(key.identity(), sort_keys=True).encode()).hexdigest()[:16]
    directory = store.cache_root() / "activations" / digest
    if not directory.is_dir():
        _check_corpus_length(spec, loaded.tokenizer)
    directory.parent.mkdir(parents=True, exist_ok=True)
    # several processes may ask for the same cache at once (shards of a family, `--executor ray`): one fills it
    with FileLock(f"{directory}.lock"):
        cache = ActivationCache(directory, key)
        if cache.is_complete:
            return loaded, cache

        forward_batch = auto_forward_batch(loaded.model, spec.context, device, spec.batch_sequences)

        def activations_of(tokens):
            return torch.cat([residual_activations(loaded.model, part.to(device), spec.hook)
                              for part in tokens.split(forward_batch)])

        return loaded, fill_cache(cache, corpus_sequences(spec, loaded.tokenizer), activations_of, progress)


def _check_corpus_length(spec: LLMActivationSpec, tokenizer) -> None:
    """Tokenising the corpus costs little beside the model pass it would otherwise cut short."""
    found = sum(1 for _ in itertools.islice(corpus_sequences(spec, tokenizer), spec.sequences))
    if found < spec.sequences:
        raise corpus_too_short(spec.corpus, spec.sequences, spec.context)


def corpus_sequences(spec: LLMActivationSpec, tokenizer) -> Iterator[torch.Tensor]:
    """The spec's token sequences, in the same order every time (the cache and CE/KL use the same ones)."""
    if spec.sae_probes_datasets:
        texts = sae_probes_texts(spec.sae_probes_datasets)
    elif spec.texts:
        texts = local_texts(spec.texts, spec.field)
    elif spec.dataset_files:
        texts = hub_file_texts(spec.dataset, spec.dataset_files, spec.dataset_revision, spec.field)
    else:
        texts = hub_texts(spec.dataset, spec.split, spec.field)
    return token_sequences(texts, tokenizer, spec.context, spec.prepend_bos)


def token_batches(spec: LLMActivationSpec, tokenizer, count: int, device: str) -> list[torch.Tensor]:
    """The first ``count`` sequences the metrics may use (the held-out ones, if any) in model batches."""
    first = spec.training_sequences if spec.heldout_sequences else 0
    sequences = list(itertools.islice(corpus_sequences(spec, tokenizer), first, first + count))
    return [torch.stack(sequences[start:start + spec.batch_sequences]).to(device)
            for start in range(0, len(sequences), spec.batch_sequences)]
