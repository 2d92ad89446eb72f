"""The verdict on one family: every selector's choice against every ground-truth target, with intervals.

Recomputed from a results file's stored metric tables (``by_l0``, ``saes``), so every family is judged by
the current selectors, whichever l0eval version ran it. Targets:

- toys: the true L0; the chosen SAE is scored by its feature recovery;
- LLM families: each target metric of ``l0eval.metrics.registry`` present in ``by_l0`` is its own target, at the L0
  where that metric is best (sparse probing peaks, absorption is lowest); the chosen SAE is scored by it.

Errors are counted in L0 steps of the family's own grid (the target's step is the grid L0 nearest it in
log L0); regret is how much worse the chosen SAE's score is than the family's best (>= 0, the metric's units).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from l0eval.metrics.registry import target_metrics
from l0eval.selection.bootstrap import BootstrapDesign, batch_matrices, bootstrap_selectors
from l0eval.selection.selectors import Selector, default_selectors

# The hand-set-n s_n^dec rule under one name across families (n differs: the family file's first snd_n).
HAND_N = "argmin_s_n_dec@hand_n"
# The rate-distortion knee the summary line compares against.
RD_KNEE = "rd_knee_kneedle"


@dataclass(frozen=True)
class Target:
    name: str  # "true_l0" or the metric column
    l0: float
    score_column: str | None
    higher_is_better: bool = True


# Targets that are ground truth by construction (toys, synthetic worlds), as opposed to downstream metrics.
SYNTHETIC_TARGETS = ("true_l0_top_width", "best_f1", "best_mcc")


def is_known_truth(target: str | None) -> bool:
    return target == "true_l0" or target in SYNTHETIC_TARGETS


class NotJudgeable(ValueError):
    """A results file without an L0 sweep to judge (a mixing toy, a benchmark)."""


def metric_table(results: dict) -> pd.DataFrame:
    if not results.get("by_l0"):
        raise NotJudgeable("no per-L0 metric table (not an L0 sweep)")
    table = pd.DataFrame(results["by_l0"]).apply(pd.to_numeric, errors="coerce")
    return table.sort_values("l0").reset_index(drop=True)


def family_width(results: dict) -> int | None:
    family = results["family"]
    width = family.get("sae", {}).get("d_sae") or results["run"].get("evaluation", {}).get("width")
    return int(width) if width else None


def verdict_selectors(results: dict) -> list[Selector]:
    """``default_selectors`` for this family, its first hand-set n renamed ``HAND_N``."""
    config = results["family"].get("selectors", {})
    snd_n = list(config.get("snd_n") or [])[:1]
    selectors = default_selectors(snd_n, config.get("canonical_target", 100.0), family_width(results))
    if snd_n:
        selectors[0] = dataclasses.replace(selectors[0], name=HAND_N)
    return selectors


def family_targets(results: dict, table: pd.DataFrame) -> list[Target]:
    truth = results.get("ground_truth", {})
    if truth.get("targets"):  # several ground-truth targets (synthetic worlds): each one judged
        return [Target(t["name"], float(t["l0"]), t["score"] if t.get("score") in table else None)
                for t in truth["targets"]]
    if truth.get("true_l0") is not None:
        score = truth.get("score") if truth.get("score") in table else None
        return [Target("true_l0", float(truth["true_l0"]), score)]
    targets = []
    for metric in target_metrics():
        column, higher = metric.name, metric.higher_is_better
        if column in table and table[column].notna().any():
            best = table[column].idxmax() if higher else table[column].idxmin()
            targets.append(Target(column, float(table.loc[best, "l0"]), column, higher))
    return targets


def grid_step(grid: np.ndarray, l0: float) -> int:
    """Index of the grid L0 nearest ``l0`` in log L0."""
    return int(np.argmin(np.abs(np.log(grid) - np.log(l0))))


def judge_target(target: Target, chosen: float | None, table: pd.DataFrame) -> dict:
    grid = table["l0"].to_numpy(float)
    row: dict = {"target": target.name, "target_l0": target.l0, "error_l0": None, "error_steps": None,
                 "within_one": None, "score": None, "best_score": None, "regret": None}
    if chosen is None:
        return row
    steps = grid_step(grid, chosen) - grid_step(grid, target.l0)
    row.update(error_l0=chosen - target.l0, error_steps=steps, within_one=abs(steps) <= 1)
    if target.score_column is not None:
        scores = table[target.score_column]
        best = scores.max() if target.higher_is_better else scores.min()
        score = float(scores[table["l0"] == chosen].iloc[0])
        row.update(score=score, best_score=float(best),
                   regret=float(best - score) if target.higher_is_better else float(score - best))
    return row


def judge_family(results: dict, design: BootstrapDesign = BootstrapDesign()) -> dict:
    """Every selector's choice, bootstrap summary and score against each target (rows: target x selector)."""
    table = metric_table(results)
    selectors = verdict_selectors(results)
    points = {s.name: s.pick(table) for s in selectors}
    boot = bootstrap_selectors(selectors, results["saes"], points, design)
    targets = family_targets(results, table)
    rows = []
    for target in targets or [None]:
        for selector in selectors:
            chosen = points[selector.name]
            judged = judge_target(target, chosen, table) if target else {"target": None}
            rows.append({"selector": selector.name, "chosen_l0": chosen, **boot[selector.name], **judged})
    family = results["family"]
    truth = results.get("ground_truth", {})
    hand_n = (family.get("selectors", {}).get("snd_n") or [None])[0]
    batches = batch_matrices(results["saes"])
    replicates = len({entry.get("seed") or 0 for entry in results["saes"]})
    resampled = (f"{next(iter(batches.values())).shape[1]} evaluation batches and {replicates} seed replicate(s)"
                 if batches else f"{replicates} seed replicate(s) only (this file has no per-batch values)")
    return {"family": family["name"], "description": family.get("description", ""), "kind": family.get("kind"),
            "grid": table["l0"].tolist(), "table": table, "targets": targets, "hand_n": hand_n,
            "width": family_width(results), "bootstrap_unit": resampled,
            "selectors": {s.name: s.description for s in selectors}, "rows": rows,
            "no_target_reason": None if targets else truth.get("reason", "no ground truth and no target metric"),
            "targets_note": truth.get("targets_note")}


def selector_tally(verdicts: list[dict], toy: bool) -> dict[str, dict]:
    """Per selector over every (family, target) of one kind (``toy``: a known true L0; else the downstream
    targets of LLM families): hits within one step, count, mean |steps| and mean regret."""
    tally: dict[str, dict] = {}
    for verdict in verdicts:
        for row in verdict["rows"]:
            if row.get("target") is None or is_known_truth(row["target"]) != toy:
                continue
            entry = tally.setdefault(row["selector"], {"hits": 0, "judged": 0, "steps": [], "regret": []})
            entry["judged"] += 1
            entry["hits"] += bool(row["within_one"])
            if row["error_steps"] is not None:
                entry["steps"].append(abs(row["error_steps"]))
            if row["regret"] is not None:
                entry["regret"].append(row["regret"])
    return tally


def summary_line(verdicts: list[dict], toy: bool) -> str | None:
    """The sentence a researcher can quote: the best selector's hits vs the rate-distortion knee's."""
    tally = selector_tally(verdicts, toy)
    if not tally:
        return None
    judged = max(entry["judged"] for entry in tally.values())
    best = min(tally, key=lambda name: (-tally[name]["hits"], _mean(tally[name]["steps"]), name))
    synthetic = any(row.get("target") in SYNTHETIC_TARGETS for verdict in verdicts for row in verdict["rows"])
    what = ("known-truth targets (toy true L0s; synthetic worlds' true L0s, best-F1 and best-MCC L0s)"
            if toy and synthetic else "toy families (true L0 known)" if toy
            else "LLM family targets (sparse-probing peak, lowest absorption)")
    line = (f"Across {judged} {what}, {best} picked within one L0 step of the ground truth in "
            f"{tally[best]['hits']} of {judged}")
    others = [name for name in (RD_KNEE, HAND_N, "s_n_dec_self_consistent", "s_n_dec_self_consistent_interior")
              if name in tally and name != best]
    for name in others:
        line += f", vs {tally[name]['hits']} of {judged} for {_LABELS.get(name, name)}"
    return line + "."


_LABELS = {RD_KNEE: "the rate-distortion knee (rd_knee_kneedle)",
           "s_n_dec_self_consistent": "the n-free s_n^dec (s_n_dec_self_consistent)",
           "s_n_dec_self_consistent_interior": "its post-hoc interior variant",
           HAND_N: "s_n^dec at the hand-set n (argmin_s_n_dec@hand_n)"}


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("inf")
