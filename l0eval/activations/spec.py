"""What activations an SAE family is evaluated on, as written in a family file (no torch import)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l0eval.errors import SpecError
from l0eval.validation import check_keys, number


@dataclass(frozen=True)
class LLMActivationSpec:
    """Residual-stream activations of a causal LM on a text corpus.

    BOS is prepended by default, as the paper and SAELens do, and its activations are kept: the
    paper's s_n^dec protocol includes BOS positions.
    """

    model: str
    hook: str
    texts: tuple[str, ...] = ()  # local .txt / .jsonl files
    dataset: str | None = None  # or a Hugging Face dataset (streamed; offline once cached)
    split: str = "train"
    field: str = "text"
    context: int = 128
    sequences: int = 256
    prepend_bos: bool = True
    batch_sequences: int = 8  # model forward batch; also the shard size of the cache
    ce_sequences: int = 16  # sequences for CE/KL with the SAE spliced in (full forward passes); 0 skips
    dtype: str = "float32"

    @property
    def corpus(self) -> str:
        return self.dataset if self.dataset else ",".join(Path(t).name for t in self.texts)


_KEYS = {"model", "hook", "texts", "dataset", "split", "field", "context", "sequences", "prepend_bos",
         "batch_sequences", "ce_sequences"}


def parse_llm_activations(raw: Any, base: Path, default_hook: str) -> LLMActivationSpec:
    spec = check_keys(raw, _KEYS, "activations", required={"model"})
    texts = spec.get("texts", [])
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise SpecError("'activations.texts' must be a list of file paths")
    if bool(texts) == bool(spec.get("dataset")):
        raise SpecError("'activations' needs exactly one of 'texts' (local files) or 'dataset' (a HF dataset)")
    hook = spec.get("hook", default_hook)
    if not hook:
        raise SpecError("'activations.hook' (or the family's 'hook') is required, e.g. blocks.6.hook_resid_post")
    prepend_bos = spec.get("prepend_bos", True)
    if not isinstance(prepend_bos, bool):
        raise SpecError("'activations.prepend_bos' must be true or false")
    return LLMActivationSpec(
        model=str(spec["model"]), hook=str(hook),
        texts=tuple(str(p if Path(p).is_absolute() else (base / p).resolve()) for p in texts),
        dataset=spec.get("dataset"), split=str(spec.get("split", "train")), field=str(spec.get("field", "text")),
        context=number(spec.get("context", 128), "activations.context", integer=True, low=2),
        sequences=number(spec.get("sequences", 256), "activations.sequences", integer=True, low=1),
        prepend_bos=prepend_bos,
        batch_sequences=number(spec.get("batch_sequences", 8), "activations.batch_sequences", integer=True, low=1),
        ce_sequences=number(spec.get("ce_sequences", 16), "activations.ce_sequences", integer=True, low=0),
    )
