"""The verdict on one family: every selector's choice against every ground-truth target, with intervals and
the baselines any selector must beat (rules: docs/selectors.md).

Recomputed from a results file's stored metric tables (``by_l0``, ``saes``), so every family is judged by
the current selectors, whichever l0eval version ran it. Targets:

- a known true L0 (toys, and any family whose ``ground_truth.true_l0`` is set); the chosen SAE is scored by
  ``ground_truth.score`` (toys: feature recovery);
- LLM families: each target metric of ``l0eval.metrics.registry`` present in ``by_l0`` is its own target, at
  the L0 where that metric is best (sparse probing peaks, absorption is lowest), bootstrapped over its own
  units (``TARGET_UNITS``: datasets, letters); the chosen SAE is scored by it.

Errors are counted in L0 steps of the family's own grid (the target's step is the grid L0 nearest it in
log L0); a target at either end of the grid is censored (it may lie beyond) and not counted. Regret is how
much worse the chosen SAE's score is than the family's best (>= 0, the metric's units). Every output is
plain data (dicts, lists, numbers, strings; ``table`` is the per-L0 DataFrame the plots draw); the fields
are listed in docs/results-schema.md#verdict.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from l0eval.metrics.registry import target_metrics
from l0eval.selection.bootstrap import (
    BootstrapDesign,
    bootstrap_choices,
    draw_weights,
    evaluation_batch_count,
    has_batch_statistics,
    replicate_tables,
    resamples_replicates,
    resampling_unit,
    summarise_choices,
)
from l0eval.selection.selectors import Selector, default_selectors, grid_step

# The hand-set-n s_n^dec rule under one name across families (n differs: the family file's first snd_n).
HAND_N = "argmin_s_n_dec@hand_n"
# A headline names a selector only when this quantile of its paired margin over the best baseline is > 0.
HEADLINE_QUANTILE = 0.05
# SAEBench's authors consider absorption reliable from this width and model size on.
ABSORPTION_MIN_WIDTH = 16_384
ABSORPTION_MIN_PARAMETERS = 1_000_000_000


@dataclass(frozen=True)
class Target:
    name: str  # "true_l0" or the metric column
    l0: float
    score_column: str | None
    higher_is_better: bool = True
    censored: bool = False  # at either end of the grid: the best L0 may lie beyond it
    resampled_l0: tuple[float, ...] | None = None  # the target in each bootstrap resample; None: fixed
    caveat: str | None = None

    def summary(self) -> dict:
        """Plain data for renderers: name, l0, censored, interval and point share of the resampled target."""
        boot = summarise_choices(list(self.resampled_l0), self.l0) if self.resampled_l0 else None
        return {"name": self.name, "l0": self.l0, "score_column": self.score_column,
                "higher_is_better": self.higher_is_better, "censored": self.censored, "caveat": self.caveat,
                "interval_90": boot["interval_90"] if boot else [self.l0, self.l0],
                "point_share": boot["point_share"] if boot else 1.0, "resampled": boot is not None}


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


def has_true_l0(results: dict) -> bool:
    return results.get("ground_truth", {}).get("true_l0") is not None


def verdict_selectors(results: dict) -> list[Selector]:
    """``default_selectors`` for this family, its first hand-set n renamed ``HAND_N``; hand-set n is an
    oracle wherever the true L0 is known (whoever set it knew the answer)."""
    config = results["family"].get("selectors", {})
    snd_n = list(config.get("snd_n") or [])[:1]
    selectors = default_selectors(snd_n, config.get("canonical_target", 100.0), family_width(results),
                                  hand_n_oracle=has_true_l0(results))
    if snd_n:
        selectors[0] = dataclasses.replace(selectors[0], name=HAND_N)
    return selectors


def _probing_units(k: int) -> Callable[[dict], dict | None]:
    def units(entry: dict) -> dict | None:
        datasets = entry.get("downstream", {}).get("sparse_probing")
        return {name: scores[str(k)]["f1"] for name, scores in datasets.items()} if datasets else None

    return units


def _absorption_units(field: str) -> Callable[[dict], dict | None]:
    def units(entry: dict) -> dict | None:
        details = entry.get("downstream", {}).get("absorption", {}).get("saebench", {}).get("eval_result_details")
        return {letter["first_letter"]: letter[field] for letter in details} if details else None

    return units


# SAEBench's published numbers as targets (``l0eval run --targets saebench``), units under saes[].downstream.saebench
PUBLISHED_TARGETS = ("saebench_sparse_probing_k1", "saebench_sae_probes_k1", "saebench_absorption_fraction",
                     "saebench_full_absorption")


def _published_units(column: str) -> Callable[[dict], dict | None]:
    def units(entry: dict) -> dict | None:
        return entry.get("downstream", {}).get("saebench", {}).get("units", {}).get(column)

    return units


# Each target's resampling units per SAE (their mean is the metric): sparse-probing datasets, absorption letters.
TARGET_UNITS = {"sparse_probing_k1": _probing_units(1), "sparse_probing_k16": _probing_units(16),
                "absorption_fraction": _absorption_units("mean_absorption_fraction"),
                "full_absorption": _absorption_units("full_absorption_rate"),
                **{column: _published_units(column) for column in PUBLISHED_TARGETS}}


def resampled_target_l0s(results: dict, column: str, higher: bool, design: BootstrapDesign) -> tuple | None:
    """The target's L0 in each resample of its units (the same draw for every SAE), or None when the file
    has no per-unit values for every SAE."""
    extract = TARGET_UNITS.get(column)
    per_sae = [extract(entry) for entry in results["saes"]] if extract else [None]
    if any(units is None for units in per_sae) or len({tuple(sorted(u)) for u in per_sae}) != 1:
        return None
    names = sorted(per_sae[0])
    values = np.array([[units[name] for name in names] for units in per_sae], float)  # [saes, units]
    l0s = np.array([entry["nominal_l0"] if entry.get("nominal_l0") is not None else entry["measured_l0"]
                    for entry in results["saes"]], float)
    grid, group = np.unique(l0s, return_inverse=True)
    rng = np.random.default_rng([design.seed, 1])  # its own stream: the selectors' draws stay as they were
    weights = draw_weights(rng, len(names), design.resamples)
    scores = np.zeros((design.resamples, len(grid)))
    np.add.at(scores.T, group, (values @ weights.T) / weights.sum(axis=1))  # summed per L0, then averaged
    scores /= np.bincount(group)
    best = np.nanargmax(scores, axis=1) if higher else np.nanargmin(scores, axis=1)
    return tuple(float(grid[i]) for i in best)


def absorption_caveat(results: dict) -> str | None:
    """SAEBench's own authors trust absorption only on wide SAEs of large models."""
    width = family_width(results)
    parameters = results["run"].get("downstream", {}).get("absorption", {}).get("model_parameters")
    small = []
    if width and width < ABSORPTION_MIN_WIDTH:
        small.append(f"width {width} < {ABSORPTION_MIN_WIDTH}")
    if parameters and parameters < ABSORPTION_MIN_PARAMETERS:
        small.append(f"{parameters / 1e6:.0f}M model parameters < 1B")
    return ("below SAEBench's recommended range for absorption (" + ", ".join(small) + "): read as unreliable"
            if small else None)


def family_targets(results: dict, table: pd.DataFrame, design: BootstrapDesign) -> list[Target]:
    grid = table["l0"].to_numpy(float)
    truth = results.get("ground_truth", {})
    if truth.get("targets"):  # several ground-truth targets (synthetic worlds): each one judged
        return [Target(t["name"], float(t["l0"]), t["score"] if t.get("score") in table else None,
                       censored=is_censored(grid, float(t["l0"]))) for t in truth["targets"]]
    if truth.get("true_l0") is not None:
        score = truth.get("score") if truth.get("score") in table else None
        l0 = float(truth["true_l0"])
        return [Target("true_l0", l0, score, censored=is_censored(grid, l0))]
    targets = []
    for metric in target_metrics():
        column, higher = metric.name, metric.higher_is_better
        if column in table and table[column].notna().any():
            best = table[column].idxmax() if higher else table[column].idxmin()
            l0 = float(table.loc[best, "l0"])
            caveat = absorption_caveat(results) if "absorption" in column else None
            targets.append(Target(column, l0, column, higher, is_censored(grid, l0),
                                  resampled_target_l0s(results, column, higher, design), caveat))
    return targets


def is_censored(grid: np.ndarray, l0: float) -> bool:
    return len(grid) > 1 and grid_step(grid, l0) in (0, len(grid) - 1)


def judge_target(target: Target, chosen: float | None, table: pd.DataFrame) -> dict:
    grid = table["l0"].to_numpy(float)
    row: dict = {"target": target.name, "target_l0": target.l0, "censored": target.censored, "error_l0": None,
                 "error_steps": None, "within_one": None, "score": None, "best_score": None, "regret": None}
    if chosen is None:
        return row
    steps = grid_step(grid, chosen) - grid_step(grid, target.l0)
    row.update(error_l0=chosen - target.l0, error_steps=steps, within_one=None if target.censored else abs(steps) <= 1)
    if target.score_column is not None:
        scores = table[target.score_column]
        best = scores.max() if target.higher_is_better else scores.min()
        score = float(scores[table["l0"] == chosen].iloc[0])
        row.update(score=score, best_score=float(best),
                   regret=float(best - score) if target.higher_is_better else float(score - best))
    return row


def chance_row(target: Target, table: pd.DataFrame) -> dict:
    """A uniformly random pick on the grid, in expectation (exact, not sampled)."""
    grid = table["l0"].to_numpy(float)
    steps = np.arange(len(grid)) - grid_step(grid, target.l0)
    row = {"selector": "chance", "label": "baseline", "chosen_l0": None, "target": target.name,
           "target_l0": target.l0, "censored": target.censored, "error_steps": float(np.mean(np.abs(steps))),
           "within_one": None if target.censored else float(np.mean(np.abs(steps) <= 1)), "regret": None}
    if target.score_column is not None:
        scores = table[target.score_column].to_numpy(float)
        best = np.nanmax(scores) if target.higher_is_better else np.nanmin(scores)
        row["regret"] = float(np.nanmean(best - scores if target.higher_is_better else scores - best))
    return row


def replicate_choices(selectors: list[Selector], results: dict) -> dict[str, list[float | None] | None]:
    """Each selector's choice on each seed replicate alone (None for a family without replicates)."""
    tables = replicate_tables(results["saes"])
    return {s.name: [s.pick(table) for table in tables] if tables else None for s in selectors}


def judge_family(results: dict, design: BootstrapDesign = BootstrapDesign()) -> dict:
    """Every selector's choice, bootstrap summary, seed spread and score against each target (rows: target x
    selector, then the chance row per target); the resampled choices and targets for the headline."""
    table = metric_table(results)
    selectors = [s for s in verdict_selectors(results) if s.applies_to(table)]
    points = {s.name: s.pick(table) for s in selectors}
    resampled = bootstrap_choices(selectors, results["saes"], design)
    boot = {name: summarise_choices(picks, points[name]) for name, picks in resampled.items()}
    targets = family_targets(results, table, design)
    spreads = replicate_choices(selectors, results)
    rows = []
    for target in targets or [None]:
        for selector in selectors:
            chosen = points[selector.name]
            judged = judge_target(target, chosen, table) if target else {"target": None}
            rows.append({"selector": selector.name, "label": selector.label, "chosen_l0": chosen,
                         **boot[selector.name], "seed_spread": spreads[selector.name], **judged})
        if target is not None:
            rows.append(chance_row(target, table))
    family = results["family"]
    truth = results.get("ground_truth", {})
    replicates = len({entry.get("seed") or 0 for entry in results["saes"]})
    batches = has_batch_statistics(results["saes"])
    unit = resampling_unit(replicates, batches)
    if batches:
        unit = f"{evaluation_batch_count(results['saes'])} " + unit
    return {"family": family["name"], "description": family.get("description", ""), "kind": family.get("kind"),
            "grid": table["l0"].tolist(), "table": table, "targets": targets,
            "hand_n": (family.get("selectors", {}).get("snd_n") or [None])[0],
            "width": family_width(results), "bootstrap_unit": unit, "resampled": batches or
            resamples_replicates(replicates), "seed_replicates": replicates,
            "selectors": {s.name: s.description for s in selectors},
            "labels": {s.name: s.label for s in selectors}, "rows": rows,
            "resampled_choices": resampled,
            "no_target_reason": None if targets else truth.get("reason", "no ground truth and no target metric"),
            "targets_note": truth.get("targets_note")}


def _counted(row: dict, toy: bool) -> bool:
    return row.get("target") is not None and is_known_truth(row["target"]) == toy and not row["censored"]


def selector_tally(verdicts: list[dict], toy: bool) -> dict[str, dict]:
    """Per selector (and ``chance``) over every uncensored (family, target) of one kind (``toy``: a known
    true L0; else the downstream targets of LLM families): ``label``, ``hits`` within one step (chance:
    expected), ``judged``, ``steps`` and ``regret`` lists, and ``censored`` (targets left out)."""
    tally: dict[str, dict] = {}
    for verdict in verdicts:
        for row in verdict["rows"]:
            if row.get("target") is None or is_known_truth(row["target"]) != toy:
                continue
            entry = tally.setdefault(row["selector"], {"label": row["label"], "hits": 0, "judged": 0,
                                                       "steps": [], "regret": [], "censored": 0})
            if row["censored"]:
                entry["censored"] += 1
                continue
            entry["judged"] += 1
            entry["hits"] += float(row["within_one"]) if row["selector"] == "chance" else bool(row["within_one"])
            if row["error_steps"] is not None:
                entry["steps"].append(abs(row["error_steps"]))
            if row["regret"] is not None:
                entry["regret"].append(row["regret"])
    return tally


def resampled_hits(verdicts: list[dict], toy: bool) -> dict[str, np.ndarray]:
    """Hits per resample summed over every uncensored target of one kind (resample r of every family
    together), per selector and for ``chance`` (expected hits), plus ``best_baseline``: in each resample, the
    largest total of any baseline or chance."""
    draws = max((len(picks) for v in verdicts for picks in v["resampled_choices"].values()), default=1)
    hits: dict[str, np.ndarray] = {"chance": np.zeros(draws)}
    baselines = {"chance"}
    for verdict in verdicts:
        grid = np.asarray(verdict["grid"], float)
        for target in verdict["targets"]:
            if is_known_truth(target.name) != toy or target.censored:
                continue
            target_steps = np.array([grid_step(grid, t) for t in (target.resampled_l0 or [target.l0] * draws)])
            hits["chance"] += np.mean(np.abs(np.arange(len(grid))[None] - target_steps[:, None]) <= 1, axis=1)
            for name, picks in verdict["resampled_choices"].items():
                steps = np.array([np.nan if p is None else grid_step(grid, p) for p in picks])
                hits[name] = hits.get(name, np.zeros(draws)) + (np.abs(steps - target_steps) <= 1)  # NaN: a miss
                if verdict["labels"][name] == "baseline":
                    baselines.add(name)
    return {**hits, "best_baseline": np.max([hits[name] for name in sorted(baselines)], axis=0)}


def headline(verdicts: list[dict], toy: bool) -> dict | None:
    """The decision a researcher can quote: the best proxy selector (oracle and post-hoc rules are not
    candidates) and whether it beats the best baseline by more than the bootstrap's spread."""
    tally = selector_tally(verdicts, toy)
    proxies = [name for name, entry in tally.items() if entry["label"] == "proxy"]
    if not proxies:
        return None
    judged = max(entry["judged"] for entry in tally.values())
    best = min(proxies, key=lambda name: (-tally[name]["hits"], _mean(tally[name]["steps"]), name))
    baselines = {name: entry["hits"] for name, entry in tally.items() if entry["label"] == "baseline"}
    resampled = resampled_hits(verdicts, toy)
    margins = resampled[best] - resampled["best_baseline"]
    low = float(np.quantile(margins, HEADLINE_QUANTILE))
    unresampled = [v["family"] for v in verdicts if not v["resampled"] and any(
        is_known_truth(t.name) == toy for t in v["targets"])]
    decided = judged > 0 and low > 0 and not unresampled
    return {"toy": toy, "judged": judged, "censored": max(entry["censored"] for entry in tally.values()),
            "best": best, "best_hits": tally[best]["hits"], "baseline_hits": baselines,
            "margin_quantile_05": low, "decided": decided, "unresampled_families": unresampled}


def summary_line(verdicts: list[dict], toy: bool) -> str | None:
    """The sentence a researcher can quote: a selector is named only when it beats every baseline by more
    than the bootstrap's spread; otherwise nothing can be decided."""
    decision = headline(verdicts, toy)
    if decision is None:
        return None
    judged = decision["judged"]
    synthetic = any(t.name in SYNTHETIC_TARGETS for verdict in verdicts for t in verdict["targets"])
    what = ("known-truth targets (toy true L0s; synthetic worlds' true L0s, best-F1 and best-MCC L0s)"
            if toy and synthetic else "toy families (true L0 known)" if toy
            else "LLM family targets (sparse-probing peak, lowest absorption)")
    baselines = ", ".join(f"{name} {_hits_text(hits)}" for name, hits in decision["baseline_hits"].items())
    line = (f"Across {judged} {what} ({decision['censored']} censored at a grid end left out), the best "
            f"proxy, {decision['best']}, picked within one L0 step in {_hits_text(decision['best_hits'])} of "
            f"{judged}; baselines: {baselines}.")
    if decision["decided"]:
        return line + (f" It beats the best baseline in {100 * (1 - HEADLINE_QUANTILE):.0f}% of paired "
                       f"bootstrap resamples (5% quantile of the margin: {decision['margin_quantile_05']:+.2f}).")
    reason = (f"{', '.join(decision['unresampled_families'])} cannot be resampled" if decision["unresampled_families"]
              else f"the 5% quantile of its margin over the best baseline is {decision['margin_quantile_05']:+.2f}")
    return line + f" No selector beats the baselines by more than the bootstrap's spread ({reason}): " \
                  "nothing can be decided from these families."


def _hits_text(hits: float) -> str:
    return f"{hits:g}" if float(hits).is_integer() else f"{hits:.2f}"


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("inf")
