"""Every file l0eval writes is written whole or not at all: a temp file in the same folder, fsync'd,
then renamed over the target (``os.replace`` is atomic on POSIX and Windows), so a kill, a crash or
a full disk leaves either the previous file or the new one, never half of one.

Temp files are named ``.<target>.<host>.<pid>.tmp``; those left by a process of this host that is no
longer alive are removed before the next write of the same target.

``$L0EVAL_KILL_DURING_WRITE=<file name>`` makes the process die (``os._exit(137)``, as SIGKILL would)
in the middle of writing that file: the kill tests use it to stop a run at one exact write.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from l0eval.errors import L0EvalError

KILL_ENV = "L0EVAL_KILL_DURING_WRITE"
KILLED_EXIT_CODE = 137  # what a shell reports for SIGKILL


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; when the block ends without error it becomes ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise L0EvalError(f"cannot create folder {path.parent}: {exc.strerror or exc}") from exc
    _remove_stale_temps(path)
    tmp = temp_path(path)
    try:
        yield tmp
        _die_here_if_asked(path, tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise L0EvalError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def temp_path(path: Path) -> Path:
    """The temp file this process writes ``path``'s new content to before renaming it over ``path``."""
    return path.parent / f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp"


def write_bytes(path: str | Path, data: bytes) -> Path:
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, payload: object) -> Path:
    """``payload`` as indented JSON (NaN refused: JSON has none)."""
    return write_text(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")


def write_torch(path: str | Path, payload: object) -> Path:
    """``torch.save(payload)`` to ``path``, through a file object: torch's own writer reports a full disk
    as a RuntimeError ("unexpected pos"), a file object as the OSError (ENOSPC) it is."""
    import torch

    with replacing(path) as tmp, open(tmp, "wb") as handle:
        torch.save(payload, handle)
    return Path(path)


def _die_here_if_asked(path: Path, tmp: Path) -> None:
    if os.environ.get(KILL_ENV) == path.name:
        with open(tmp, "rb+") as handle:  # half the file on disk, as a kill mid-write leaves it
            handle.truncate(tmp.stat().st_size // 2)
        os._exit(KILLED_EXIT_CODE)


def _remove_stale_temps(path: Path) -> None:
    import psutil

    host = socket.gethostname()
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        temp_host, _, pid = tmp.name[len(path.name) + 2:-len(".tmp")].rpartition(".")
        if temp_host == host and pid.isdigit() and not psutil.pid_exists(int(pid)):
            tmp.unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)
