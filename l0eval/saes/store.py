"""Where trained SAEs live: ``$L0EVAL_CACHE`` (default ``~/.cache/l0eval``), one SAELens folder per member.

A family's folder is keyed by its name and spec fingerprint, so a changed spec never reuses stale
SAEs. Members are written in the SAELens on-disk format (cfg.json + sae_weights.safetensors) and read
back with sae-lens; ``complete.json`` is written last, so a folder without it is an unfinished run.
Every file here is written atomically (``l0eval.atomic``); a marker or member list damaged anyway
(another tool, a failing disk) is reported and repaired, not fatal.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from l0eval import atomic
from l0eval.errors import L0EvalError, ResultsError, first_line
from l0eval.safe_names import path_component

COMPLETE_MARKER = "complete.json"
TRAINED_MANIFEST = "members.json"
MEMBER_RECORD = "l0eval-member.json"  # beside each trained member's weights: its members.json entry
CACHE_ENV = "L0EVAL_CACHE"


def cache_root() -> Path:
    """``$L0EVAL_CACHE`` (default ``~/.cache/l0eval``); an empty value or a file there is an error."""
    raw = os.environ.get(CACHE_ENV)
    if raw is None:
        return Path.home() / ".cache" / "l0eval"
    if not raw.strip():
        raise L0EvalError(f"{CACHE_ENV} is set but empty: unset it (default ~/.cache/l0eval) or name a folder")
    root = Path(raw)
    if root.exists() and not root.is_dir():
        raise L0EvalError(f"{CACHE_ENV}={raw} is not a folder")
    return root


def family_dir(name: str, fingerprint: str) -> Path:
    return cache_root() / "families" / f"{path_component(name)}-{fingerprint}"


@contextmanager
def exclusive(directory: Path, what: str) -> Iterator[None]:
    """Hold ``<directory>.lock`` while training or saving into ``directory``: a second run of the same
    work on this cache waits (saying so) and then reuses what the first one finished."""
    from filelock import FileLock, Timeout

    directory.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(f"{directory}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        _warn(f"another l0eval run is working on {what} ({directory}); waiting for it to finish")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def is_complete(directory: Path) -> bool:
    """Whether the family in ``directory`` finished; a damaged marker is reported and counts as not
    finished, so the run resumes from the training checkpoint (or retrains) and writes it again."""
    marker = directory / COMPLETE_MARKER
    if not marker.is_file():
        return False
    if _read_json(marker, dict) is None:
        _warn(f"{marker} is damaged; finishing the family again (resumes from its checkpoint if any)")
        marker.unlink()
        return False
    return True


def mark_complete(directory: Path, info: dict) -> None:
    atomic.write_json(directory / COMPLETE_MARKER, info)


def read_marker(directory: Path) -> dict:
    return json.loads((directory / COMPLETE_MARKER).read_text())


def trained_dir(family_name: str) -> Path:
    """Where SAEs trained to fill a family's missing L0s live."""
    return cache_root() / "trained" / path_component(family_name)


def trained_members(family_name: str) -> list[dict]:
    """Members trained here for ``family_name`` ({"path", "nominal_l0", ...}), in the order they were added.
    A damaged list is reported and rebuilt from the record beside each member's weights."""
    manifest = trained_dir(family_name) / TRAINED_MANIFEST
    if not manifest.is_file():
        return []
    members = _read_json(manifest, list)
    if members is None or not all(isinstance(m, dict) and "path" in m for m in members):
        members = _rebuilt_members(family_name)
        _warn(f"{manifest} is damaged; rebuilt it from {len(members)} trained member folder(s)")
        atomic.write_json(manifest, members)
    return members


def add_trained_members(family_name: str, added: list[dict]) -> None:
    """Record new trained members; a retrained folder replaces its earlier entry."""
    for member in added:
        atomic.write_json(Path(member["path"]) / MEMBER_RECORD, member)
    new_paths = {member["path"] for member in added}
    members = [m for m in trained_members(family_name) if m["path"] not in new_paths] + added
    atomic.write_json(trained_dir(family_name) / TRAINED_MANIFEST, members)


def _rebuilt_members(family_name: str) -> list[dict]:
    records = [_read_json(path, dict) for path in trained_dir(family_name).glob(f"*/*/{MEMBER_RECORD}")]
    return sorted((r for r in records if r and "path" in r), key=lambda r: (r.get("nominal_l0", 0), r["path"]))


def _read_json(path: Path, kind: type):
    """The JSON value in ``path`` if it is a ``kind``; None if the file is empty, truncated or another type."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, kind) else None


def _warn(line: str) -> None:
    print(f"l0eval: warning: {line}", file=sys.stderr)


def save_member(sae, folder: Path, inference: bool = False) -> None:
    """Save ``sae`` in SAELens's on-disk format (the two files of its ``save_model``, or of
    ``save_inference_model`` when ``inference``), each written whole or not at all.

    Why not sae-lens's own savers: safetensors' ``save_file`` reports a full disk as a SafetensorError that
    names no file (l0eval exited 1 on it) and writes through its own temp file. The bytes are the same:
    sae-lens's state-dict and config hooks, ``safetensors.torch.save`` (the serialiser ``save_file`` uses) and
    the config as sae-lens dumps it.
    """
    from sae_lens.constants import SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME
    from safetensors.torch import save

    state = sae.state_dict()
    if inference:
        sae.process_state_dict_for_saving_inference(state)
        config = sae.cfg.get_inference_sae_cfg_dict()
    else:
        sae.process_state_dict_for_saving(state)
        config = sae.cfg.to_dict()
    atomic.write_bytes(folder / SAE_WEIGHTS_FILENAME, save(state))
    atomic.write_text(folder / SAE_CFG_FILENAME, json.dumps(config))


def load_member(path: Path, device: str = "cpu"):
    """Load a SAELens-format folder; training architectures (e.g. ``batchtopk``) load as training SAEs,
    which keep their batch-level activation (the paper evaluates toy SAEs with BatchTopK)."""
    cfg = read_cfg(path)
    from sae_lens import SAE, TrainingSAE  # imported here: listing families must not pay sae-lens's import time

    loader = TrainingSAE if cfg.get("architecture") in ("batchtopk", "matryoshka_batchtopk") else SAE
    try:
        sae = loader.load_from_disk(str(path), device=device)
    except Exception as exc:  # safetensors/sae-lens raise many types; name the file either way
        raise ResultsError(f"cannot load SAE from {path}: {exc}") from exc  # the CLI prints it as one line
    sae.eval()
    return sae


MAX_CFG_BYTES = 1 << 20  # a cfg.json is a few hundred bytes; refuse /dev/zero and the like before reading


def read_cfg(path: Path) -> dict:
    """An SAE folder's cfg.json as a mapping, or a one-line error naming the file."""
    cfg_path = Path(path) / "cfg.json"
    try:
        if not cfg_path.is_file():
            raise ResultsError(f"{cfg_path}: not a regular file" if cfg_path.exists() else f"{cfg_path} not found")
        with open(cfg_path, "rb") as handle:
            data = handle.read(MAX_CFG_BYTES + 1)
        if len(data) > MAX_CFG_BYTES:
            raise ResultsError(f"{cfg_path} is over {MAX_CFG_BYTES} bytes: not an SAE config")
        cfg = json.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"cannot read {cfg_path}: {first_line(exc)}") from exc
    if not isinstance(cfg, dict):
        raise ResultsError(f"{cfg_path} must hold a JSON object, got {type(cfg).__name__}")
    return cfg

