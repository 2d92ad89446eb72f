"""An on-disk activation cache: fixed-size shards of [tokens, d_model] arrays plus a manifest.

The manifest records everything that changes the content (model, revision, hook, dataset, context,
token count, dtype, BOS handling); a cache whose manifest differs from the request is refused, never
silently reused. Shards are written atomically and listed in the manifest only once complete, so an
interrupted build resumes after its last finished shard and gives the same bytes as an uninterrupted one.
Shards are ``.npy`` files, read back memory-mapped.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from l0eval import atomic
from l0eval.errors import L0EvalError

MANIFEST = "manifest.json"


class CacheMismatchError(L0EvalError):
    """The cache on disk was made for a different request."""


# CacheKey fields added later, with the value every older cache implicitly had
LATER_FIELDS = {"model_dtype": "float32"}


@dataclass(frozen=True)
class CacheKey:
    """Everything that changes the cached activations."""

    model: str
    revision: str
    hook: str
    dataset: str
    context: int
    n_sequences: int
    dtype: str
    prepend_bos: bool
    shard_sequences: int
    model_dtype: str = "float32"

    def identity(self) -> dict:
        """The fields that name this cache (digest and manifest). Fields added after caches existed are
        left out at their default, so caches written before they existed keep their name and stay valid."""
        fields = asdict(self)
        for name, default in LATER_FIELDS.items():
            if fields[name] == default:
                del fields[name]
        return fields

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "float16"):  # what .npy shards can hold (numpy has no bfloat16)
            raise L0EvalError(f"activation cache dtype must be float32 or float16, got {self.dtype!r}")

    @property
    def n_tokens(self) -> int:
        return self.n_sequences * self.context

    @property
    def n_shards(self) -> int:
        return -(-self.n_sequences // self.shard_sequences)


class ActivationCache:
    def __init__(self, directory: str | Path, key: CacheKey):
        self.directory = Path(directory)
        self.key = key
        self.completed: list[str] = []
        self.n_sequences = key.n_sequences  # of the shards this object reads (``part`` reads fewer)
        self._open()

    def _open(self) -> None:
        manifest = self.directory / MANIFEST
        if manifest.is_file():
            stored = json.loads(manifest.read_text())
            cached = {**LATER_FIELDS, **stored["key"]}
            differing = {name: (cached.get(name), value) for name, value in asdict(self.key).items()
                         if cached.get(name) != value}
            if differing:
                details = ", ".join(f"{name}: cached {old!r}, requested {new!r}"
                                    for name, (old, new) in differing.items())
                raise CacheMismatchError(f"activation cache {self.directory} was made for another request ({details}); "
                                         "use another cache directory or delete this one")
            self.completed = list(stored["shards"])
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._write_manifest()

    def _write_manifest(self) -> None:
        atomic.write_json(self.directory / MANIFEST, {"key": self.key.identity(), "n_tokens": self.key.n_tokens,
                                                      "shards": self.completed})

    @property
    def is_complete(self) -> bool:
        return len(self.completed) == self.key.n_shards

    def add_shard(self, activations: np.ndarray) -> None:
        name = f"shard_{len(self.completed):05d}.npy"
        with atomic.replacing(self.directory / name) as tmp, open(tmp, "wb") as handle:
            np.save(handle, activations)
        self.completed.append(name)
        self._write_manifest()

    def part(self, first_sequence: int, stop_sequence: int) -> ActivationCache:
        """The same complete cache reading only sequences ``first_sequence:stop_sequence`` (whole shards): the
        training sequences or the held-out ones."""
        size = self.key.shard_sequences
        ragged_end = stop_sequence % size and stop_sequence != self.key.n_sequences
        if not self.is_complete or first_sequence % size or ragged_end:
            raise L0EvalError(f"activation cache {self.directory}: a part must start and end on a shard boundary "
                              f"({size} sequences) of a complete cache")
        view = copy.copy(self)
        view.completed = self.completed[first_sequence // size:-(-stop_sequence // size)]
        view.n_sequences = stop_sequence - first_sequence
        return view

    def shards(self) -> Iterator[np.ndarray]:
        """Each completed shard, memory-mapped: [tokens, d_model]."""
        for name in self.completed:
            yield np.load(self.directory / name, mmap_mode="r")

    def n_rows(self, exclude_bos: bool = False) -> int:
        """Token rows ``batches`` yields in all."""
        return self.n_sequences * (self.key.context - 1 if exclude_bos else self.key.context)

    def batches(self, batch_tokens: int, exclude_bos: bool = False) -> Iterator[torch.Tensor]:
        """Batches of exactly ``batch_tokens`` token rows (the last may be shorter), in order across shards,
        as float32 tensors: s_n^dec depends on the batch size, so a batch never stops at a shard boundary.
        ``exclude_bos`` leaves out each sequence's first position (a shard holds whole sequences)."""
        pending: list[np.ndarray] = []
        held = 0
        for shard in self.shards():
            if exclude_bos:
                shard = shard[~bos_rows(shard.shape[0], self.key.context)]
            start = 0
            while start < shard.shape[0]:
                take = min(batch_tokens - held, shard.shape[0] - start)
                pending.append(shard[start:start + take])
                held, start = held + take, start + take
                if held == batch_tokens:
                    yield _float32_tensor(pending)
                    pending, held = [], 0
        if held:
            yield _float32_tensor(pending)


def bos_rows(n_rows: int, context: int) -> np.ndarray:
    """Which of ``n_rows`` cache rows hold a BOS position: every sequence fills ``context`` consecutive rows
    (shards hold whole sequences) and starts with its BOS."""
    return np.arange(n_rows) % context == 0


def _float32_tensor(parts: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.concatenate(parts).astype(np.float32, copy=False))


def fill_cache(cache: ActivationCache, sequences: Iterator[torch.Tensor],
               activations_of: Callable[[torch.Tensor], torch.Tensor], progress: bool = True) -> ActivationCache:
    """Compute the missing shards: skip the sequences of finished shards, then run ``activations_of`` on
    one shard's sequences at a time ([n, context] token ids -> [n, context, d_model])."""
    key = cache.key
    done = len(cache.completed)
    remaining = key.n_sequences - done * key.shard_sequences
    bar = tqdm(total=key.n_tokens, initial=done * key.shard_sequences * key.context, unit="tok", unit_scale=True,
               desc=f"activations {key.hook}", disable=not progress)
    for _ in range(done * key.shard_sequences):
        _next_sequence(sequences, key)
    while remaining > 0:
        count = min(key.shard_sequences, remaining)
        batch = torch.stack([_next_sequence(sequences, key) for _ in range(count)])
        acts = activations_of(batch)
        cache.add_shard(acts.reshape(-1, acts.shape[-1]).to(getattr(torch, key.dtype)).cpu().numpy())
        remaining -= count
        bar.update(batch.numel())
    bar.close()
    return cache


def corpus_too_short(corpus: str, n_sequences: int, context: int) -> L0EvalError:
    return L0EvalError(f"the corpus '{corpus}' has fewer than {n_sequences} sequences of {context} tokens; ask for "
                       "fewer sequences or give more text")


def _next_sequence(sequences: Iterator[torch.Tensor], key: CacheKey) -> torch.Tensor:
    try:
        return next(sequences)
    except StopIteration:
        raise corpus_too_short(key.dataset, key.n_sequences, key.context) from None
