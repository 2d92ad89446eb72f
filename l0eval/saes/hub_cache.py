"""Which files a member needs and whether they are already in the huggingface_hub cache.

Imports only huggingface_hub, so ``l0eval families`` can report cache status, and ``l0eval download``
fetch, without loading torch.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from huggingface_hub import constants, snapshot_download, try_to_load_from_cache
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, OfflineModeIsEnabled
from huggingface_hub.utils import validate_repo_id

from l0eval.errors import L0EvalError, first_line
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


class LoadError(L0EvalError):
    """A member could not be downloaded, read or validated; the message names the file."""


def download(member: LoadedMember) -> None:
    """Fetch only this member's files into the standard cache; a no-op when they are already there."""
    if member.is_local:
        return
    check_hub_location(member)
    if is_cached(member):
        return
    try:
        snapshot_download(member.repo_id, allow_patterns=list(member_files(member)))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        raise LoadError(not_cached_message(member)) from exc


def check_hub_location(member: LoadedMember) -> None:
    """A hub member's repo id is one huggingface_hub accepts and its folder stays inside the repo."""
    try:
        validate_repo_id(member.repo_id)
    except HFValidationError as exc:
        raise LoadError(f"member '{member.id}': invalid hub repo_id {member.repo_id!r} ({first_line(exc)})") from exc
    parts = PurePosixPath(member.path).parts
    if member.path.startswith(("/", "\\")) or ".." in parts or "\0" in member.path:
        raise LoadError(f"member '{member.id}': hub path {member.path!r} must be a folder inside the repo "
                        "(relative, no '..')")


def unreachable_reason() -> str:
    """Why a file that is not cached could not be fetched."""
    return "HF_HUB_OFFLINE is set" if constants.is_offline_mode() else f"the hub at {constants.ENDPOINT} did not answer"


def not_cached_message(member: LoadedMember) -> str:
    return (f"{member.repo_id}/{member.path} is not in the Hugging Face cache and {unreachable_reason()}; "
            "run once with network access to download it")

