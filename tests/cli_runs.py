"""The `l0eval` CLI as a test sees it: in this process through ``l0eval.cli.main(argv)`` (the function
the console script calls), or in a fresh ``python -m l0eval.cli`` process.

In this process, stderr is captured at the file-descriptor level, and a warning or log record that a
plain interpreter would print counts as a stderr line, so "exactly one line" means the same in both.
A fresh process also reads the environment at import and shares nothing with the tests: keep it for
what only a process start shows (environment read at import, the console entry, a real kill).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).parent.parent
# what a plain interpreter does not print (Python's default warning filters)
SILENT_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


class CliRun(NamedTuple):
    code: int
    stdout: str
    lines: list[str]  # stderr lines, then the warnings and log records a plain interpreter would print

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)


def in_process(argv: list[str], env: dict[str, str], cwd: Path | None, monkeypatch, capfd, caplog) -> CliRun:
    """``main(argv)`` with ``env`` set (``HF_HUB_CACHE`` also where huggingface_hub read it at import)."""
    from huggingface_hub import constants

    from l0eval.cli import main

    for key, item in env.items():
        monkeypatch.setenv(key, item)
    if "HF_HUB_CACHE" in env:
        monkeypatch.setattr(constants, "HF_HUB_CACHE", env["HF_HUB_CACHE"])
    if cwd is not None:
        monkeypatch.chdir(cwd)
    capfd.readouterr()
    caplog.set_level(logging.WARNING)
    caplog.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(argv)
    captured = capfd.readouterr()
    lines = captured.err.splitlines()
    lines += [f"warning: {w.message}" for w in caught if not issubclass(w.category, SILENT_WARNINGS)]
    return CliRun(code, captured.out, lines + [f"log: {record.getMessage()}" for record in caplog.records])


def in_a_fresh_process(argv: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 300) -> CliRun:
    done = subprocess.run([sys.executable, "-m", "l0eval.cli", *argv], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env}, cwd=cwd, timeout=timeout)
    return CliRun(done.returncode, done.stdout, done.stderr.splitlines())
