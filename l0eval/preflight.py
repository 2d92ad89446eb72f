"""Checks a command makes before any model pass, training or allocation: the device, the output and
cache folders, and every numeric option. Each failure is a one-line L0EvalError naming the option
or path, so a bad command costs nothing and writes nothing."""

from __future__ import annotations

import math
import os
import re
import tempfile
from pathlib import Path

from l0eval.errors import L0EvalError

_DEVICE = re.compile(r"cpu|cuda(:\d+)?")


def device(name: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N`` that this machine has."""
    if not _DEVICE.fullmatch(name):
        raise L0EvalError(f"--device {name!r}: use cpu, cuda or cuda:N")
    if name.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise L0EvalError(f"--device {name} asked for, but torch sees no CUDA device")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise L0EvalError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return name


def writable_folder(path: str | Path, option: str) -> Path:
    """A folder that exists and takes files, or can be created: checked by creating (and removing) a
    temp file in it or in its nearest existing parent; nothing is left behind."""
    path = Path(path)
    if "\0" in str(path):
        raise L0EvalError(f"{option}: the path contains a NUL character")
    existing = path
    while not existing.exists():
        if existing.is_symlink():
            raise L0EvalError(f"{option} {path}: {existing} is a broken symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        shown = f"{path} is a file" if existing == path else f"{existing} (in {path}) is a file"
        raise L0EvalError(f"{option} {shown}, not a folder")
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".l0eval-write-check-")
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise L0EvalError(f"{option} {path}: cannot write in {existing} ({exc.strerror or exc})") from exc
    return path


def cache_folder() -> Path:
    """``$L0EVAL_CACHE`` (or the default) is usable: checked like an output folder."""
    from l0eval.saes.store import CACHE_ENV, cache_root

    return writable_folder(cache_root(), CACHE_ENV)


def whole(value: int | None, option: str, low: int = 1, high: int | None = None) -> int | None:
    """An integer option in [low, high] (None: not given)."""
    if value is None:
        return None
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in {low}..{high:,}"
        raise L0EvalError(f"{option} must be {bounds}, got {value}")
    return value


def positive(value: float | None, option: str) -> float | None:
    """A finite number > 0 (None: not given); NaN and inf are refused (every comparison with NaN is false)."""
    if value is None:
        return None
    if not math.isfinite(value) or value <= 0:
        raise L0EvalError(f"{option} must be a finite number > 0, got {value}")
    return value


def distinct(values: list, option: str) -> list:
    """The values of a repeated option, each given once."""
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise L0EvalError(f"{option}: {', '.join(f'{v:g}' if isinstance(v, float) else str(v) for v in repeated)} "
                          "given more than once")
    return values
