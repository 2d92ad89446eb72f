import os

# Tests never touch the network: the hub is read from (test-built) caches only. Set before any
# huggingface_hub import, which reads it once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from huggingface_hub import constants  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own l0eval cache, so nothing leaks between tests or into ~/.cache."""
    monkeypatch.setenv("L0EVAL_CACHE", str(tmp_path / "l0eval-cache"))
    torch.manual_seed(0)
    yield


@pytest.fixture
def device() -> str:
    """Tests that take this fixture exercise the CUDA paths when a GPU is present, the CPU otherwise."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture
def cli(monkeypatch, capfd, caplog):
    """``cli(argv, env={}, cwd=None) -> CliRun``: the CLI run in this process (tests/cli_runs.py)."""
    from cli_runs import in_process

    return lambda argv, env=None, cwd=None: in_process(argv, env or {}, cwd, monkeypatch, capfd, caplog)


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """A private huggingface_hub cache, offline: nothing can be fetched, only read from the cache."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache
