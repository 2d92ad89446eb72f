"""One model pass per family: compute (or reuse) the activation cache an LLM activation spec asks for."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from l0eval import store
from l0eval.activations.cache import ActivationCache, CacheKey, fill_cache
from l0eval.activations.hooks import parse_hook, residual_activations
from l0eval.activations.models import load_model
from l0eval.activations.spec import LLMActivationSpec
from l0eval.activations.text import hub_texts, local_texts, token_sequences


def cache_key(spec: LLMActivationSpec, revision: str) -> CacheKey:
    return CacheKey(model=spec.model, revision=revision, hook=spec.hook, dataset=spec.corpus,
                    context=spec.context, n_sequences=spec.sequences, dtype=spec.dtype,
                    prepend_bos=spec.prepend_bos, shard_sequences=spec.batch_sequences)


def activation_cache(spec: LLMActivationSpec, device: str = "cpu", progress: bool = True) -> ActivationCache:
    """The cache for ``spec`` under ``$L0EVAL_CACHE/activations/``, filled if missing or unfinished.

    The folder name hashes the whole key, so a different request never lands in the same folder; the
    manifest check inside ``ActivationCache`` guards against anything that slipped through anyway.
    """
    parse_hook(spec.hook)  # a malformed hook is reported before the model loads
    loaded = load_model(spec.model, device=device)
    key = cache_key(spec, loaded.revision)
    digest = hashlib.sha256(json.dumps(asdict(key), sort_keys=True).encode()).hexdigest()[:16]
    cache = ActivationCache(store.cache_root() / "activations" / digest, key)
    if cache.is_complete:
        return cache
    texts = local_texts(spec.texts, spec.field) if spec.texts else hub_texts(spec.dataset, spec.split, spec.field)
    sequences = token_sequences(texts, loaded.tokenizer, spec.context, spec.prepend_bos)

    def activations_of(tokens):
        return residual_activations(loaded.model, tokens.to(device), spec.hook)

    return fill_cache(cache, sequences, activations_of, progress)
