"""Evaluate a family by streaming activation batches once through all of its SAEs.

The shared pass gives every SAE its core metrics (reconstruction, sparsity) and s_n^dec, c_dec, c_enc; the
per-L0 table and the selectors follow. ``l0eval.runs.llm`` adds the model-side metrics on top; an activation
source without a model of its own can evaluate with ``evaluate_streamed`` alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from l0eval.family.model import EvaluationJob, Family, MemberInfo, Obtained
from l0eval.metrics.registry import metric_versions
from l0eval.metrics.stream import evaluate_family
from l0eval.results import build_results, now
from l0eval.runs.notices import flag_l0_disagreements
from l0eval.selection.bootstrap import BootstrapDesign
from l0eval.selection.selectors import DEFAULT_N_OVER_WIDTH, snd_n_values, width_fraction_n
from l0eval.selection.sweep import sweep_verdict

# s_n^dec's batch size B matters (the paper's LLM protocol: 4096-token batches, values averaged)
BATCH_ROWS = 4096

NO_TRUE_L0 = "no true L0 is known for these activations"


def n_values_for(members: list[MemberInfo], width: int) -> tuple[list[int], list[int]]:
    """(hand-set n, every n to measure): the paper's n/width, and the n each selector needs. Members without
    a nominal L0 get no self-consistent n (their L0 is known only after the pass)."""
    snd_n = [width_fraction_n(width, DEFAULT_N_OVER_WIDTH)]
    return snd_n, snd_n_values([m.nominal_l0 for m in members if m.nominal_l0 is not None], width, snd_n)


Batches = Sequence[torch.Tensor] | Callable[[], Iterable[torch.Tensor]]  # a callable replays a stream from disk


def streamed_metrics(saes: list, batches: Batches, n_values: list[int], rows: int, progress: bool) -> list[dict]:
    """Per SAE, the shared pass's metrics with per-batch values; s_n^dec on unit-norm decoder rows (the paper's
    LLM SAEs have them)."""
    return evaluate_family(saes, batches, n_values, normalize_decoder=True, progress_total=rows if progress else None,
                           keep_batches=True)


def sae_entries(members: list[MemberInfo], metrics: list[dict], details: list[dict] | None = None) -> list[dict]:
    """The results' ``saes`` entries, with a warning on each member whose measured L0 is far from its nominal."""
    entries = []
    for index, (member, met) in enumerate(zip(members, metrics)):
        batches = met.pop("batches", None)
        entry = {"id": member.id, "nominal_l0": member.nominal_l0, "measured_l0": met.get("l0"),
                 "trained_here": member.trained_here, "metrics": met}
        if batches is not None:
            entry["batches"] = batches
        if details is not None:
            entry["downstream"] = details[index]
        entries.append(entry)
    flag_l0_disagreements(entries)
    return entries


def bootstrap_record(entries: list[dict]) -> dict[str, Any]:
    return BootstrapDesign().record(len(entries[0]["batches"]["rows"]), 1)


def evaluate_streamed(family: Family, obtained: Obtained, job: EvaluationJob, batches: Batches,
                      rows: int) -> dict[str, Any]:
    """Results from the shared pass alone: ``batches`` (``BATCH_ROWS`` rows each) through every SAE, the per-L0
    table and the selectors; no ground truth beyond what the metrics show."""
    width = obtained.saes[0].cfg.d_sae
    snd_n, n_values = n_values_for(obtained.members, width)
    entries = sae_entries(obtained.members, streamed_metrics(obtained.saes, batches, n_values, rows, job.progress))
    table, selectors = sweep_verdict(entries, snd_n, width)
    source = family.require_activations()
    run = {**job.header, "finished": now(), "training": obtained.training,
           "evaluation": {"n_values": n_values, "decoder_rows": "unit-normalised for s_n^dec", "token_rows": rows,
                          "width": width, "bootstrap": bootstrap_record(entries)},
           "metric_versions": metric_versions(*source.extra_formulas)}
    return build_results(family=family.members.record(family, snd_n), run=run,
                         ground_truth={"true_l0": None, "reason": NO_TRUE_L0}, saes=entries,
                         by_l0=table.to_dict(orient="records"), selectors=selectors)
