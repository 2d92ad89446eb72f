"""The hub files an LLM family's run reads beside its SAEs: the model and tokenizer, the corpus files.

``missing`` says which are not in the huggingface_hub cache (``l0eval run`` refuses offline before any work,
naming them and the download command); ``fetch`` downloads them (``l0eval download``). Imports only
huggingface_hub: ``l0eval families`` reports what is missing without loading torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from huggingface_hub import constants, hf_hub_download, snapshot_download, try_to_load_from_cache
from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

from l0eval.activations.llm.named_models import is_hub_model
from l0eval.errors import L0EvalError
from l0eval.family.llm_spec import LLMActivationSpec
from l0eval.family.registry import size_text
from l0eval.saes.hub_cache import unreachable_reason

# what `from_pretrained` reads for the model and its tokenizer (not the repo's other weight formats)
MODEL_PATTERNS = ["*.json", "*.safetensors", "tokenizer*", "*.model", "merges.txt", "vocab.txt"]
# one of these names the weights (a single file or a sharded index)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def _cached(repo_id: str, filename: str, revision: str, repo_type: str = "model") -> bool:
    return isinstance(try_to_load_from_cache(repo_id, filename, revision=revision, repo_type=repo_type), str)


def cached_commit(repo_id: str, revision: str) -> str | None:
    """The commit of the cached snapshot ``revision`` names (its ``config.json``'s folder), if cached."""
    path = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    return Path(path).parent.name if isinstance(path, str) else None


def model_cached(spec: LLMActivationSpec) -> bool:
    if not is_hub_model(spec.model):
        return True
    return (_cached(spec.model, "config.json", spec.revision)
            and any(_cached(spec.model, name, spec.revision) for name in WEIGHT_FILES))


def missing(spec: LLMActivationSpec) -> list[str]:
    """What of the run's hub inputs is not in the cache, one phrase each."""
    gaps = [] if model_cached(spec) else [f"model {spec.model}@{spec.revision}"]
    gaps += [f"corpus file {spec.dataset}/{name}" for name in spec.dataset_files
             if not _cached(spec.dataset, name, spec.dataset_revision, "dataset")]
    return gaps


def fetch(spec: LLMActivationSpec) -> Iterator[str]:
    """Download the model (weights, config, tokenizer) and the corpus files; one line each."""
    try:
        if is_hub_model(spec.model):
            folder = snapshot_download(spec.model, revision=spec.revision, allow_patterns=MODEL_PATTERNS)
            yield f"model {spec.model}@{spec.revision}: {size_text(_folder_bytes(Path(folder)))} in {folder}"
        for name in spec.dataset_files:
            path = hf_hub_download(spec.dataset, name, repo_type="dataset", revision=spec.dataset_revision)
            yield f"corpus file {spec.dataset}/{name}: {size_text(Path(path).stat().st_size)}"
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        raise L0EvalError(f"cannot fetch {', '.join(missing(spec))}: {unreachable_reason()}") from exc


def _folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def cache_bytes() -> int:
    """Bytes in the huggingface_hub cache's blobs (what a download adds to)."""
    root = Path(constants.HF_HUB_CACHE)
    return sum(blob.stat().st_size for blob in root.glob("*/blobs/*") if blob.is_file()) if root.is_dir() else 0
