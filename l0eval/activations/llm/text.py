"""Token sequences of a fixed context length from local text/JSONL files or a Hugging Face dataset.

Documents are tokenised without special tokens and packed end to end; each sequence is cut to
``context`` tokens and, with ``prepend_bos`` (the default, as the paper and SAELens do), starts
with the tokenizer's BOS token, which is then part of the activations (the paper includes BOS).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from l0eval.errors import L0EvalError


def local_texts(paths: Iterable[str | Path], field: str = "text") -> Iterator[str]:
    """Documents from ``.txt`` files (one document per blank-line-separated paragraph) or ``.jsonl``."""
    for path in map(Path, paths):
        if not path.is_file():
            raise L0EvalError(f"text file not found: {path}")
        if path.suffix == ".jsonl":
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if line.strip():
                    record = json.loads(line)
                    if field not in record:
                        raise L0EvalError(f"{path}:{number}: no '{field}' field")
                    yield record[field]
        else:
            yield from (part for part in path.read_text().split("\n\n") if part.strip())


def hub_texts(dataset: str, split: str = "train", field: str = "text") -> Iterator[str]:
    """Documents streamed from a Hugging Face dataset (works offline for datasets in the HF cache)."""
    from datasets import load_dataset
    from huggingface_hub import constants

    try:
        for record in load_dataset(dataset, split=split, streaming=True):
            if field not in record:
                raise L0EvalError(f"dataset '{dataset}' has no '{field}' field (fields: {', '.join(record)})")
            yield record[field]
    except L0EvalError:
        raise
    except Exception as exc:  # datasets raises ConnectionError, FileNotFoundError, its own types...: name the dataset
        where = "HF_HUB_OFFLINE is set and it is not cached" if constants.is_offline_mode() else \
            f"from {constants.ENDPOINT}"
        raise L0EvalError(f"cannot read dataset '{dataset}' (split {split}; {where}): {type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from exc


# the `datasets` builder that reads each kind of corpus file
FILE_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".txt": "text"}


def hub_dataset_file(dataset: str, filename: str, revision: str) -> str:
    """The local path of one file of a hub dataset repo: from the huggingface_hub cache, fetched when online."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        return hf_hub_download(dataset, filename, repo_type="dataset", revision=revision)
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        raise L0EvalError(f"dataset file {dataset}/{filename} (revision {revision}) is not in the Hugging Face "
                          f"cache and cannot be fetched: {str(exc).strip().splitlines()[0]}") from exc


def hub_file_texts(dataset: str, filenames: Iterable[str], revision: str, field: str = "text") -> Iterator[str]:
    """Documents of the given files of a hub dataset repo, in file order, read with ``datasets``' own builders."""
    from datasets import load_dataset

    for filename in filenames:
        builder = FILE_BUILDERS.get(Path(filename).suffix)
        if builder is None:
            raise L0EvalError(f"dataset file {filename}: l0eval reads {', '.join(FILE_BUILDERS)} files")
        records = load_dataset(builder, data_files=hub_dataset_file(dataset, filename, revision), split="train",
                               streaming=True)
        for record in records:
            if field not in record:
                raise L0EvalError(f"dataset file {dataset}/{filename} has no '{field}' field "
                                  f"(fields: {', '.join(record)})")
            yield record[field]


def sae_probes_texts(tags: Iterable[str]) -> Iterator[str]:
    """The prompts of datasets shipped in the sae-probes wheel, e.g. ``100_news_fake`` (news articles): an
    offline natural-language corpus. Read with sae-probes' own reader, in file order."""
    from sae_probes.utils_data import get_numbered_binary_tags, read_numbered_dataset_df

    known = set(get_numbered_binary_tags())
    for tag in tags:
        if tag not in known:
            raise L0EvalError(f"unknown sae-probes dataset '{tag}' (known: {', '.join(sorted(known)[:5])}, ...)")
        yield from read_numbered_dataset_df(tag)["prompt"].astype(str)


def token_sequences(texts: Iterable[str], tokenizer, context: int, prepend_bos: bool = True) -> Iterator[torch.Tensor]:
    """Packed token sequences of exactly ``context`` tokens (the tail that does not fill one is dropped)."""
    bos = tokenizer.bos_token_id
    if prepend_bos and bos is None:
        raise L0EvalError("prepend_bos is set but the tokenizer has no BOS token")
    body = context - 1 if prepend_bos else context
    buffer: list[int] = []
    for text in texts:
        buffer.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        while len(buffer) >= body:
            chunk, buffer = buffer[:body], buffer[body:]
            yield torch.tensor(([bos] if prepend_bos else []) + chunk, dtype=torch.long)
