"""Load any family member into a sae-lens SAE, through sae-lens's own converters, and check it.

| format               | files                                  | converter (sae-lens)                          |
|----------------------|----------------------------------------|-----------------------------------------------|
| sae_lens             | cfg.json + sae_weights.safetensors     | native loader (hub) / ``load_from_disk`` (local) |
| dictionary_learning  | ae.pt + config.json (SAEBench trainers)| ``dictionary_learning_sae_huggingface_loader_1`` |
| gemma_scope          | params.npz                             | ``gemma_2_sae_huggingface_loader``            |
| sae_lens_release     | whatever the release's converter reads | the release's ``conversion_func``             |

Downloads go through ``huggingface_hub`` into its standard cache, only the member's files
(``allow_patterns``), so ``HF_HUB_OFFLINE=1`` works for anything cached. Every loaded SAE is checked:
shapes agree with each other and with the family's d_in, weights are finite floats.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled
from sae_lens import SAE
from sae_lens.loading.pretrained_sae_loaders import NAMED_PRETRAINED_SAE_LOADERS

from l0eval.errors import L0EvalError, first_line
from l0eval.family.registry import LoadedMember
from l0eval.saes import store
from l0eval.saes.hub_cache import LoadError, download, not_cached_message, storage_format


@contextlib.contextmanager
def _torch_load_weights_only() -> Iterator[None]:
    """Force ``weights_only=True`` on every ``torch.load`` inside the block.

    sae-lens's dictionary_learning converter calls ``torch.load(path)`` without the flag, so whether a
    pickle payload in an ``ae.pt`` could run depends on torch's default and environment flags. We keep
    its converter (it knows every trainer's layout) and close that door here.
    """
    original = torch.load

    def safe_load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return original(*args, **kwargs)

    torch.load = safe_load
    try:
        yield
    finally:
        torch.load = original


# the on-disk format -> sae-lens's converter for it (by its name in NAMED_PRETRAINED_SAE_LOADERS)
CONVERTERS = {"sae_lens": "sae_lens", "dictionary_learning": "dictionary_learning_1", "gemma_scope": "gemma_2"}


def _converter(member: LoadedMember) -> Callable[..., Any]:
    """sae-lens's converter for the member's format, with weights-only loading and the member's overrides."""
    base = NAMED_PRETRAINED_SAE_LOADERS[member.converter or CONVERTERS[storage_format(member)]]

    def convert(repo_id: str, folder_name: str, device: str, force_download: bool = False,
                cfg_overrides: dict[str, Any] | None = None) -> Any:
        if storage_format(member) == "dictionary_learning":
            _check_dict_class(repo_id, folder_name)
        with _torch_load_weights_only():
            return base(repo_id=repo_id, folder_name=folder_name, device=device, force_download=force_download,
                        cfg_overrides={**(cfg_overrides or {}), **member.cfg_overrides})

    return convert


# the dictionary_learning classes sae-lens's converter maps to an architecture; it reads any other as a
# plain ReLU SAE, which would silently evaluate the wrong encoder
KNOWN_DICT_CLASSES = ("AutoEncoder", "AutoEncoderTopK", "GatedAutoEncoder", "BatchTopKSAE", "MatryoshkaBatchTopKSAE",
                      "JumpReluAutoEncoder")


def _check_dict_class(repo_id: str, folder_name: str) -> None:
    import json

    config_path = hf_hub_download(repo_id, f"{folder_name}/config.json")
    try:
        dict_class = json.loads(Path(config_path).read_text())["trainer"]["dict_class"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # no class to check: sae-lens's converter reports the broken config itself
    if dict_class not in KNOWN_DICT_CLASSES:
        raise LoadError(f"{repo_id}/{folder_name}: dictionary_learning class {dict_class!r} is not one sae-lens "
                        f"converts ({', '.join(KNOWN_DICT_CLASSES)})")


def load_member(member: LoadedMember, d_in: int | None = None, device: str = "cpu") -> SAE:
    """The member as a validated sae-lens SAE (downloading its files first if needed and allowed)."""
    where = member.path if member.is_local else f"{member.repo_id}/{member.path}"
    if member.is_local:
        if not Path(member.path).is_dir():
            raise LoadError(f"SAE folder not found: {member.path}")
        sae = store.load_member(Path(member.path), device)
    else:
        download(member)
        try:
            sae = SAE.from_pretrained(member.release or member.repo_id, _sae_id(member), device=device,
                                      converter=_converter(member))
        except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
            raise LoadError(not_cached_message(member)) from exc
        except LoadError:
            raise
        except Exception as exc:  # safetensors, pickle, numpy and KeyError failures: say which member
            raise LoadError(f"cannot load {where}: {type(exc).__name__}: {first_line(exc)}") from exc
    validate_sae(sae, where, d_in)
    return sae


def _sae_id(member: LoadedMember) -> str:
    """What sae-lens's ``from_pretrained`` takes: the SAE's id in its release, else its folder in the repo."""
    if member.release is None:
        return member.path
    from l0eval.family.registry import sae_lens_releases

    saes = sae_lens_releases()[member.release]["saes"]
    return next((entry["id"] for entry in saes if entry["path"] == member.path), member.id)



def validate_sae(sae: SAE, where: str, d_in: int | None = None) -> None:
    """Shapes agree (W_enc [d_in, d_sae], W_dec [d_sae, d_in], biases), d_in matches, weights are finite."""
    d_sae = sae.cfg.d_sae
    expected = {"W_enc": (sae.cfg.d_in, d_sae), "W_dec": (d_sae, sae.cfg.d_in), "b_dec": (sae.cfg.d_in,)}
    for name, shape in expected.items():
        actual = tuple(getattr(sae, name).shape)
        if actual != shape:
            raise LoadError(f"{where}: {name} has shape {list(actual)}, expected {list(shape)} from its config "
                            f"(d_in={sae.cfg.d_in}, d_sae={d_sae})")
    if d_in is not None and sae.cfg.d_in != d_in:
        raise LoadError(f"{where}: SAE d_in is {sae.cfg.d_in} but the family's activations have d_in {d_in}")
    for name, tensor in sae.state_dict().items():
        if not tensor.is_floating_point():
            raise LoadError(f"{where}: {name} has dtype {tensor.dtype}, expected floating point")
        if not torch.isfinite(tensor).all():
            raise LoadError(f"{where}: {name} contains NaN or inf")


def load_family(name: str, members: Sequence[LoadedMember], d_in: int | None,
                device: str = "cpu") -> list[SAE]:
    """Every member of family ``name``, loaded and checked against the family's ``d_in``."""
    if not members:
        raise L0EvalError(f"family '{name}' has no members yet: list some under 'members' or train them "
                          f"with `l0eval train --family {name} --l0 K ...`")
    return [load_member(member, d_in, device) for member in members]
