import pytest
import torch


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own l0eval cache, so nothing leaks between tests or into ~/.cache."""
    monkeypatch.setenv("L0EVAL_CACHE", str(tmp_path / "l0eval-cache"))
    torch.manual_seed(0)
    yield


def device_under_test() -> str:
    """Tests exercise CUDA paths when a GPU is present, the CPU otherwise."""
    return "cuda" if torch.cuda.is_available() else "cpu"
