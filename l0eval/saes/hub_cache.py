"""Which files a member needs and whether they are already in the huggingface_hub cache.

Imports only huggingface_hub, so ``l0eval families`` can report cache status without loading torch.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import try_to_load_from_cache

from l0eval.family.registry import LoadedMember

FILES_BY_FORMAT = {
    "sae_lens": ("cfg.json", "sae_weights.safetensors"),
    "dictionary_learning": ("config.json", "ae.pt"),
    "gemma_scope": ("params.npz",),
}

# sae-lens conversion_func -> the on-disk format it reads
CONVERTER_FORMATS = {None: "sae_lens", "gemma_2": "gemma_scope", "dictionary_learning_1": "dictionary_learning"}


def storage_format(member: LoadedMember) -> str:
    if member.format != "sae_lens_release":
        return member.format
    return CONVERTER_FORMATS.get(member.converter, "sae_lens")


def member_files(member: LoadedMember) -> tuple[str, ...]:
    """The repo files a member needs (relative to the repo root)."""
    return tuple(f"{member.path}/{name}" for name in FILES_BY_FORMAT[storage_format(member)])


def is_cached(member: LoadedMember) -> bool:
    """Whether every file the member needs is in the huggingface_hub cache (or on disk, if local)."""
    if member.is_local:
        return all((Path(member.path) / name).is_file() for name in FILES_BY_FORMAT["sae_lens"])
    return all(isinstance(try_to_load_from_cache(member.repo_id, filename), str) for filename in member_files(member))
