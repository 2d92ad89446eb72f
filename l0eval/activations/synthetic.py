"""SynthSAEBench worlds as an activation source: a ``sae_lens.synthetic.SyntheticModel`` per family.

The world is written in the family YAML as a ``SyntheticModelConfig`` in the library's own ``to_dict``
layout (nested configs name their ``generator_name``), parsed strictly from the config dataclasses'
fields, so every field the library has is accepted and nothing else; or it is a hub copy
(``SyntheticModel.from_pretrained``). Generation, hierarchy, correlation and evaluation are the
library's; this module only parses, caches, seeds and hashes.

A built world is saved once under ``$L0EVAL_CACHE/worlds/<config hash>/`` (``SyntheticModel.save``,
into a temporary folder renamed into place) and loaded from there ever after: building the 16k world
orthogonalises 16,384 vectors (about 55 minutes on 2 CPU cores).

``SyntheticModel.sample`` draws from the global torch RNG; a ``WorldBatchSource`` stream keeps its own
RNG state and swaps it in for each draw, so streams are seeded, independent and resumable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import constants, try_to_load_from_cache
from sae_lens.synthetic import FiringProbabilityConfig, MagnitudeConfig, SyntheticModel, SyntheticModelConfig
from sae_lens.synthetic.registry import FIRING_PROB_REGISTRY, MAGNITUDE_REGISTRY
from sae_lens.synthetic.synthetic_model import SYNTHETIC_MODEL_CONFIG_FILENAME, SYNTHETIC_MODEL_WEIGHTS_FILENAME

from l0eval.errors import L0EvalError, SpecError
from l0eval.family.validation import check_keys
from l0eval.saes.store import cache_root

# Abstract config bases that the library resolves through a registry keyed by ``generator_name``.
_REGISTRIES = {FiringProbabilityConfig: FIRING_PROB_REGISTRY, MagnitudeConfig: MAGNITUDE_REGISTRY}

WORLD_MARKER = "l0eval_world.json"


# -- strict parsing of a SyntheticModelConfig --------------------------------------------------------


def parse_world_config(raw: Any, where: str = "world.config") -> SyntheticModelConfig:
    """A ``SyntheticModelConfig`` from its ``to_dict`` layout, or a one-line ``SpecError`` naming the key."""
    config = _dataclass_from(SyntheticModelConfig, raw, where)
    _check_probabilities(config, where)
    _check_hierarchy_fits(config, where)
    return config


def _dataclass_from(cls: type, raw: Any, where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    required = {name for name, f in fields.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    check_keys(raw, set(fields), where, required)
    hints = typing.get_type_hints(cls)
    kwargs = {name: _value(hints[name], value, f"{where}.{name}") for name, value in raw.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # the library's own __post_init__ checks
        raise SpecError(f"'{where}': {exc}") from exc


def _value(hint: Any, value: Any, where: str) -> Any:
    """``value`` converted to the type ``hint`` of a config field, checked strictly."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [o for o in typing.get_args(hint) if o is not type(None)]
        if value is None:
            if len(options) < len(typing.get_args(hint)):
                return None
            raise SpecError(f"'{where}' must not be null")
        for option in options:
            if _accepts(option, value):
                return _value(option, value, where)
        raise SpecError(f"'{where}' must be {' or '.join(_describe(o) for o in options)}, got {value!r}")
    if hint in _REGISTRIES:
        return _registered_config(hint, value, where)
    if dataclasses.is_dataclass(hint):
        return _dataclass_from(hint, value, where)
    if typing.get_origin(hint) is tuple:
        items = typing.get_args(hint)
        if not isinstance(value, list) or len(value) != len(items):
            raise SpecError(f"'{where}' must be a list of {len(items)} values, got {value!r}")
        return tuple(_value(item, v, f"{where}[{i}]") for i, (item, v) in enumerate(zip(items, value)))
    if not _accepts(hint, value):
        raise SpecError(f"'{where}' must be {_describe(hint)}, got {value!r}")
    return float(value) if hint is float else value


def _accepts(hint: Any, value: Any) -> bool:
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if typing.get_origin(hint) is tuple:
        return isinstance(value, list)
    return isinstance(value, dict) and (hint in _REGISTRIES or dataclasses.is_dataclass(hint))


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is tuple:
        return f"a list of {len(typing.get_args(hint))}"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, f"a mapping ({getattr(hint, '__name__', hint)})")


def _registered_config(base: type, value: Any, where: str) -> Any:
    registry = _REGISTRIES[base]
    if not isinstance(value, dict) or "generator_name" not in value:
        raise SpecError(f"'{where}' must be a mapping with a 'generator_name' ({', '.join(sorted(registry))})")
    name = value["generator_name"]
    if name not in registry:
        raise SpecError(f"'{where}.generator_name' must be one of {', '.join(sorted(registry))}, got {name!r}")
    return _dataclass_from(registry[name], {k: v for k, v in value.items() if k != "generator_name"}, where)


def _check_probabilities(config: SyntheticModelConfig, where: str) -> None:
    """Every base firing probability in (0, 1] (the library checks some generators only when sampling)."""
    try:
        probabilities = config.firing_probability.generate(config.num_features, seed=config.seed)
    except ValueError as exc:
        raise SpecError(f"'{where}.firing_probability': {exc}") from exc
    bad = probabilities[(probabilities <= 0) | (probabilities > 1) | ~torch.isfinite(probabilities)]
    if bad.numel():
        raise SpecError(f"'{where}.firing_probability' gives probabilities outside (0, 1] (e.g. {bad[0].item():g})")


def hierarchy_size(config: SyntheticModelConfig) -> int:
    """Features the configured hierarchy forest asks for: roots x (1 + b + ... + b^depth), b the largest
    branching factor (``generate_hierarchy`` silently truncates a forest that does not fit)."""
    tree = config.hierarchy
    if tree is None:
        return 0
    branching = tree.branching_factor if isinstance(tree.branching_factor, int) else tree.branching_factor[1]
    return tree.total_root_nodes * sum(branching ** depth for depth in range(tree.max_depth + 1))


def _check_hierarchy_fits(config: SyntheticModelConfig, where: str) -> None:
    needed = hierarchy_size(config)
    if needed > config.num_features:
        raise SpecError(f"'{where}.hierarchy' needs {needed} features ({config.hierarchy.total_root_nodes} trees "
                        f"of depth {config.hierarchy.max_depth}) but num_features is {config.num_features}")


# -- worlds: build once, cache, hash ------------------------------------------------------------------


def config_hash(config: SyntheticModelConfig) -> str:
    return _sha(json.dumps(config.to_dict(), sort_keys=True).encode())[:16]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.detach().cpu().contiguous().numpy().tobytes()


def feature_dictionary_hash(model: SyntheticModel) -> str:
    """sha256 of the feature vectors and bias (float bytes): equal iff two worlds map features alike."""
    return _sha(_tensor_bytes(model.feature_dict.feature_vectors) + _tensor_bytes(model.feature_dict.bias))


def world_hash(model: SyntheticModel) -> str:
    """sha256 of everything ``sample`` depends on: dictionary, firing probabilities, magnitudes,
    correlation factors and the hierarchy."""
    generator = model.activation_generator
    parts = [model.feature_dict.feature_vectors, model.feature_dict.bias, generator.firing_probabilities,
             generator.mean_firing_magnitudes, generator.std_firing_magnitudes]
    if model.correlation_matrix is not None:
        parts += [model.correlation_matrix.correlation_factor, model.correlation_matrix.correlation_diag]
    hierarchy = json.dumps(model.hierarchy.to_dict() if model.hierarchy is not None else None, sort_keys=True)
    return _sha(b"".join(_tensor_bytes(p) for p in parts) + hierarchy.encode())


def worlds_dir() -> Path:
    return cache_root() / "worlds"


def load_world(spec, device: str = "cpu", progress: bool = True) -> tuple[SyntheticModel, dict]:
    """The world of ``spec`` (``l0eval.family.synthetic_spec.WorldSpec``) and a record of it (key, hashes, how it
    was obtained, and how it compares with its published copy where the spec names one). Built at most once per
    config."""
    directory = worlds_dir() / spec.key
    if spec.hub is not None and not (directory / WORLD_MARKER).is_file():
        repo_id, subfolder = hub_location(spec.hub)
        model = SyntheticModel.from_pretrained(repo_id, model_path=subfolder or None)
        _save_atomically(model, directory, {"source": f"hub:{spec.hub}", "build_seconds": 0.0})
    elif not (directory / WORLD_MARKER).is_file():
        if progress:
            print(f"building SynthSAEBench world {spec.key} (once; saved under {directory})", flush=True)
        started = time.monotonic()
        model = SyntheticModel(spec.config)
        _save_atomically(model, directory, {"source": "built from config",
                                            "build_seconds": time.monotonic() - started})
    record = json.loads((directory / WORLD_MARKER).read_text())
    model = SyntheticModel.load_from_disk(directory, device=device)
    if spec.published is not None:
        record["published_copy"] = compare_with_published(model, spec.published)
    return model, {**record, "cache_dir": str(directory)}


# -- the hub copy of a world ----------------------------------------------------------------------------

# what SyntheticModel.save writes and from_pretrained reads (hierarchy.json is optional)
HUB_WORLD_FILES = (SYNTHETIC_MODEL_CONFIG_FILENAME, SYNTHETIC_MODEL_WEIGHTS_FILENAME)

# Why a world regenerated here may differ from a published copy of the same config: sae-lens draws the feature
# dictionary from a torch.Generator on the build device, and SynthSAEBench-16k was built on CUDA
# (decoderesearch/synth-sae-bench-experiments, experiments/create_synth_bench_16k_model.py:
# `SyntheticModel(cfg, device="cuda")`), whose random stream is not the CPU's.
DEVICE_NOTE = ("the published copy was built with SyntheticModel(cfg, device='cuda'); sae-lens draws the feature "
               "dictionary from a torch.Generator on the build device, so a build on another device draws other "
               "vectors from the same seed")


def hub_location(hub: str) -> tuple[str, str]:
    """``owner/name[:subfolder]`` -> (repo id, subfolder or '')."""
    repo_id, _, subfolder = hub.partition(":")
    return repo_id, subfolder


def cached_hub_world(hub: str) -> Path | None:
    """The folder of the Hugging Face cache snapshot holding the world's files, None unless all are cached."""
    repo_id, subfolder = hub_location(hub)
    prefix = f"{subfolder}/" if subfolder else ""
    paths = [try_to_load_from_cache(repo_id, prefix + name) for name in HUB_WORLD_FILES]
    return Path(paths[0]).parent if all(isinstance(path, str) for path in paths) else None


def compare_with_published(model: SyntheticModel, hub: str) -> dict:
    """Whether ``model`` equals the published copy ``hub`` of its config: read from the Hugging Face cache only
    (never downloaded for this check), so it runs where the copy is cached and says so where it is not."""
    snapshot = cached_hub_world(hub)
    if snapshot is None:
        return {"repo": hub, "checked": False, "reason": "not in the Hugging Face cache"}
    published = SyntheticModel.load_from_disk(snapshot, device=str(world_device(model)))
    same_config = published.cfg.to_dict() == model.cfg.to_dict()
    ours, theirs = feature_dictionary_hash(model), feature_dictionary_hash(published)
    result = {"repo": hub, "checked": True, "config_equal": same_config, "feature_dictionary_equal": ours == theirs,
              "feature_dictionary_sha256": theirs}
    if ours != theirs:
        result["difference"] = _dictionary_difference(model, published)
        result["note"] = DEVICE_NOTE
    return result


def _dictionary_difference(model: SyntheticModel, published: SyntheticModel) -> dict:
    """How far apart two feature dictionaries are, feature by feature (shapes first)."""
    ours, theirs = model.feature_dict.feature_vectors.detach(), published.feature_dict.feature_vectors.detach()
    if ours.shape != theirs.shape:
        return {"shapes": [list(ours.shape), list(theirs.shape)]}
    cosine = torch.nn.functional.cosine_similarity(ours, theirs, dim=1)
    return {"max_abs_difference": float((ours - theirs).abs().max()), "mean_cosine_same_feature": float(cosine.mean())}


def check_world_reachable(spec, family: str) -> None:
    """Before a run: the world's config parses (strictly), and a hub world can be had (cached here, or the hub
    allowed)."""
    _ = spec.config
    if spec.hub is None or (worlds_dir() / spec.key / WORLD_MARKER).is_file() or cached_hub_world(spec.hub):
        return
    if constants.is_offline_mode():
        raise L0EvalError(f"world {spec.hub} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; unset it, "
                          f"then `l0eval download --family {family}`")


def download_world(spec) -> str:
    """Fetch a hub world into the Hugging Face cache and l0eval's world cache; one line saying what it is."""
    if spec.hub is None:
        return f"world {spec.key}: built from its config on the first run (nothing to download)"
    _, record = load_world(spec, progress=False)
    return (f"world {spec.hub}: {record['num_features']} features, hidden {record['hidden_dim']}, "
            f"feature dictionary sha256 {record['feature_dictionary_sha256'][:16]}  ok")


def _save_atomically(model: SyntheticModel, directory: Path, info: dict) -> None:
    """Save into a temporary sibling folder, then rename: a killed build leaves no half world behind."""
    from importlib.metadata import version

    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    record = {**info, "key": directory.name, "sae_lens": version("sae-lens"),
              "feature_dictionary_sha256": feature_dictionary_hash(model), "world_sha256": world_hash(model),
              "num_features": model.cfg.num_features, "hidden_dim": model.cfg.hidden_dim}
    (tmp / WORLD_MARKER).write_text(json.dumps(record, indent=2) + "\n")
    try:
        os.rename(tmp, directory)
    except OSError:  # another process finished the same world first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if not (directory / WORLD_MARKER).is_file():
            raise


# -- seeded sampling ----------------------------------------------------------------------------------


@contextmanager
def rng_swapped(state: torch.Tensor, device: torch.device) -> Iterator[list[torch.Tensor]]:
    """Run the body on the RNG state ``state`` of ``device``'s generator; the caller's RNG is untouched.
    Yields a one-element list holding the state the body left, for the next draw."""
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else []):
        (torch.cuda.set_rng_state(state, device) if cuda else torch.set_rng_state(state))
        after: list[torch.Tensor] = []
        yield after
        after.append(torch.cuda.get_rng_state(device) if cuda else torch.get_rng_state())


def seeded_rng_state(seed: int, device: torch.device) -> torch.Tensor:
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def world_device(model: SyntheticModel) -> torch.device:
    return model.feature_dict.feature_vectors.device


def sample_with_features(model: SyntheticModel, samples: int, seed: int,
                         chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``samples`` seeded draws (inputs, true feature activations), ``chunk`` at a time (the library's
    dense hierarchy step is much cheaper per sample in large batches)."""
    device = world_device(model)
    state = seeded_rng_state(seed, device)
    inputs, features = [], []
    for start in range(0, samples, chunk):
        with rng_swapped(state, device) as after:
            x, f = model.sample_with_features(min(chunk, samples - start))
        state = after[0]
        inputs.append(x)
        features.append(f)
    return torch.cat(inputs), torch.cat(features)


class WorldBatchSource:
    """Training batches from a world, one seeded stream per seed replicate (the trainer gives stream s to
    the s-th block of consecutive members). Each stream draws ``chunk`` samples at a time and hands
    them out in order, so a stream is fixed by (world, seed, chunk) whatever the training batch size."""

    def __init__(self, model: SyntheticModel, seeds: list[int], chunk: int):
        self.model = model
        self.chunk = chunk
        self.device = world_device(model)
        self.sample_seconds = 0.0
        self.chunk_states = [seeded_rng_state(seed, self.device) for seed in seeds]
        self.next_states = list(self.chunk_states)
        self.buffers: list[torch.Tensor | None] = [None] * len(seeds)
        self.positions = [0] * len(seeds)

    def _take(self, stream: int, count: int) -> torch.Tensor:
        pieces = []
        while count:
            buffer = self.buffers[stream]
            if buffer is None or self.positions[stream] == buffer.shape[0]:
                buffer = self._draw(stream)
            take = min(count, buffer.shape[0] - self.positions[stream])
            pieces.append(buffer[self.positions[stream]:self.positions[stream] + take])
            self.positions[stream] += take
            count -= take
        return torch.cat(pieces) if len(pieces) > 1 else pieces[0]

    def _draw(self, stream: int) -> torch.Tensor:
        started = time.monotonic()
        self.chunk_states[stream] = self.next_states[stream]
        with rng_swapped(self.chunk_states[stream], self.device) as after:
            buffer = self.model.sample(self.chunk)
        self.next_states[stream] = after[0]
        self.buffers[stream], self.positions[stream] = buffer, 0
        self.sample_seconds += time.monotonic() - started
        return buffer

    def next_batch(self, batch_size: int) -> torch.Tensor:
        batches = [self._take(stream, batch_size) for stream in range(len(self.buffers))]
        return batches[0] if len(batches) == 1 else torch.stack(batches)

    def get_state(self) -> torch.Tensor:
        """Per stream: the RNG state at the start of its current chunk, then its position (8 bytes)."""
        rows = [torch.cat([state.cpu(), torch.tensor([position], dtype=torch.int64).view(torch.uint8)])
                for state, position in zip(self.chunk_states, self.positions)]
        return torch.stack(rows)

    def set_state(self, state: torch.Tensor) -> None:
        for stream, row in enumerate(state.cpu()):
            self.next_states[stream] = row[:-8].clone()
            position = int(row[-8:].clone().view(torch.int64)[0])
            self._draw(stream)
            self.positions[stream] = position
