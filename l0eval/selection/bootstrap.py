"""How sure is each selector's choice? A bootstrap over evaluation batches (and seed replicates, when there
are enough of them) that recomputes the statistics the point estimate reports.

Every member stores, per evaluation batch, the sufficient statistics of its pooled metrics (``saes[i].batches``:
``rows``, ``squared_error``, ``squared_norm``, ``sum_x_gram``) and s_n^dec's per-batch order statistic (the
point estimate is their mean). A resample draws the batches with replacement (the same draw for every SAE:
all SAEs saw the same batches, so the draw is paired) and recomputes mse, VE and FVU *pooled* over the drawn
batches and s_n^dec as the mean over them; the all-ones draw gives the point estimate. Metrics of the
weights alone (c_dec, c_enc, feature recovery) do not change with the batches.

Seed replicates are drawn with replacement only when a family has at least ``MIN_RESAMPLED_REPLICATES``;
with two or three, a bootstrap over them says little more than their spread, so the interval covers
evaluation noise only and the verdict reports the single replicates' choices as the seed spread.
Files whose per-batch values predate the sufficient statistics are not resampled over batches (said in
``bootstrap_unit``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from l0eval.metrics.reconstruction import BATCH_SUMS, pooled_reconstruction
from l0eval.selection.selectors import Selector, metric_row, snd_column

# A selector's choice is "indistinguishable" from every other L0 it picks in at least this share of resamples.
INDISTINGUISHABLE_SHARE = 0.05
# Fewer seed replicates than this are not resampled: 2-3 draws make a spread, not a confidence interval.
MIN_RESAMPLED_REPLICATES = 4


@dataclass(frozen=True)
class BootstrapDesign:
    resamples: int = 200
    seed: int = 0

    def record(self, batches: int, replicates: int) -> dict:
        """What a results file says about the bootstrap (``run.evaluation.bootstrap``)."""
        return {"resamples": self.resamples, "seed": self.seed, "rng": "numpy default_rng(seed)",
                "evaluation_batches": batches, "seed_replicates": replicates, "unit": resampling_unit(replicates),
                "statistic": "pooled over the drawn batches (mse, VE, FVU from per-batch sums; s_n^dec the mean "
                             "of per-batch order statistics), as the point estimate over all batches",
                "indistinguishable_share": INDISTINGUISHABLE_SHARE}


def resamples_replicates(replicates: int) -> bool:
    return replicates >= MIN_RESAMPLED_REPLICATES


def resampling_unit(replicates: int, batches: bool = True) -> str:
    """What a resample draws, in words (the verdict's ``bootstrap_unit``)."""
    drawn = ["evaluation batches (the same draw for every SAE)"] if batches else []
    if resamples_replicates(replicates):
        drawn.append(f"the {replicates} seed replicates")
    text = " and ".join(drawn) + " with replacement" if drawn else "nothing (the file has no per-batch statistics)"
    if 1 < replicates < MIN_RESAMPLED_REPLICATES:
        text += f"; {replicates} seed replicates are too few to resample: their choices are the seed spread"
    return text


def member_l0(entry: dict) -> float:
    """The sweep axis of a member: its nominal L0 (k), else its measured L0."""
    return float(entry["nominal_l0"] if entry.get("nominal_l0") is not None else entry["measured_l0"])


def member_table(saes: Sequence[dict]) -> pd.DataFrame:
    """One row per member: ``l0``, ``seed`` (0 when the family has no replicates) and its flat metrics."""
    frame = pd.DataFrame([metric_row(member_l0(entry), entry["metrics"], seed=entry.get("seed") or 0)
                          for entry in saes])
    return frame.apply(pd.to_numeric, errors="coerce")  # a metric that is not a number cannot be averaged


def replicate_tables(saes: Sequence[dict]) -> list[pd.DataFrame]:
    """One per-L0 table per seed replicate (empty for a family without replicates)."""
    members = member_table(saes)
    seeds = sorted(members["seed"].unique())
    return [members[members["seed"] == s].drop(columns="seed").reset_index(drop=True)
            for s in seeds] if len(seeds) > 1 else []


def has_batch_statistics(saes: Sequence[dict]) -> bool:
    """Every member has per-batch sufficient statistics, over equally many batches."""
    if not saes or any("squared_error" not in entry.get("batches", {}) for entry in saes):
        return False
    return len({len(entry["batches"]["rows"]) for entry in saes}) == 1


def evaluation_batch_count(saes: Sequence[dict]) -> int:
    return len(saes[0]["batches"]["rows"]) if has_batch_statistics(saes) else 0


def pooled_member_values(entry: dict, weights: np.ndarray) -> dict[str, np.ndarray]:
    """A member's batch-dependent metric columns under each draw (row of ``weights`` [draws, batches]):
    mse, VE and FVU pooled over the drawn batches, s_n^dec columns the mean of the drawn batches' values."""
    batches = entry["batches"]
    values = pooled_reconstruction({key: batches[key] for key in (*BATCH_SUMS, "sum_x_gram")}, weights)
    counts = weights.sum(axis=1)
    for metric in ("s_n_dec", "s_n_dec_alive"):
        for n, per_batch in batches.get(metric, {}).items():
            values[snd_column(float(n), metric)] = weights @ np.asarray(per_batch, float) / counts
    return values


def draw_weights(rng: np.random.Generator, units: int, draws: int) -> np.ndarray:
    """[draws, units]: how often each unit is in each draw of ``units`` with replacement."""
    picks = rng.integers(0, units, (draws, units))
    return np.stack([np.bincount(row, minlength=units) for row in picks]).astype(float)


def resampled_tables(saes: Sequence[dict], design: BootstrapDesign) -> list[pd.DataFrame]:
    """``design.resamples`` per-L0 tables, each from one draw of evaluation batches (and of seed replicates,
    when there are at least ``MIN_RESAMPLED_REPLICATES``): the weighted mean over a row's members of their
    metrics recomputed on the drawn batches. Missing values are skipped, as pandas does."""
    members = member_table(saes)
    columns = [c for c in members.columns if c not in ("l0", "seed")]
    static = members[columns].to_numpy(float)
    rng = np.random.default_rng(design.seed)
    draws = design.resamples
    values = np.repeat(static[None], draws, axis=0)  # [draws, members, columns]
    if has_batch_statistics(saes):
        batch_weights = draw_weights(rng, evaluation_batch_count(saes), draws)
        for m, entry in enumerate(saes):
            for column, resampled in pooled_member_values(entry, batch_weights).items():
                if column in columns:
                    values[:, m, columns.index(column)] = resampled
    grid, group = np.unique(members["l0"].to_numpy(float), return_inverse=True)
    replicates, replicate_of = np.unique(members["seed"].to_numpy(float), return_inverse=True)
    seed_weights = (draw_weights(rng, len(replicates), draws) if resamples_replicates(len(replicates))
                    else np.ones((draws, len(replicates))))
    tables = []
    for r in range(draws):
        weights = seed_weights[r][replicate_of][:, None] * np.isfinite(values[r])
        sums, totals = np.zeros((len(grid), len(columns))), np.zeros((len(grid), len(columns)))
        np.add.at(sums, group, np.where(weights > 0, values[r], 0.0) * weights)
        np.add.at(totals, group, weights)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums / totals
        tables.append(pd.DataFrame({"l0": grid, **dict(zip(columns, means.T))}))
    return tables


def bootstrap_choices(selectors: Sequence[Selector], saes: Sequence[dict],
                      design: BootstrapDesign) -> dict[str, list[float | None]]:
    """Selector name -> its choice in each resample (resample order, the same for every selector)."""
    tables = resampled_tables(saes, design)
    return {s.name: [s.pick(table) for table in tables] for s in selectors}


def summarise_choices(choices: Sequence[float | None], point: float | None) -> dict:
    """The bootstrap distribution of one selector's choice: its 90% interval (the 5% and 95% quantiles,
    widened to hold the point choice), how often the point choice came back, and every L0 picked in at least
    ``INDISTINGUISHABLE_SHARE`` of resamples (``plausible_l0s``: more than one means the data cannot tell
    those L0s apart for this selector)."""
    decided = np.array([c for c in choices if c is not None], dtype=float)
    if decided.size == 0:
        return {"interval_90": None if point is None else [point, point], "point_share": 0.0,
                "plausible_l0s": [], "undecided_share": 1.0}
    values, counts = np.unique(decided, return_counts=True)
    shares = counts / len(choices)
    low, high = (float(q) for q in np.quantile(decided, [0.05, 0.95], method="inverted_cdf"))
    if point is not None:
        low, high = min(low, point), max(high, point)
    return {"interval_90": [low, high],
            "point_share": float(np.mean([c == point for c in choices])) if point is not None else 0.0,
            "plausible_l0s": [float(v) for v, s in zip(values, shares) if s >= INDISTINGUISHABLE_SHARE],
            "undecided_share": 1.0 - decided.size / len(choices)}


def bootstrap_selectors(selectors: Sequence[Selector], saes: Sequence[dict], points: dict[str, float | None],
                        design: BootstrapDesign) -> dict[str, dict]:
    """Selector name -> ``summarise_choices`` of its bootstrap distribution around its point choice."""
    choices = bootstrap_choices(selectors, saes, design)
    return {name: summarise_choices(picks, points.get(name)) for name, picks in choices.items()}


def add_bootstrap(scored: dict[str, dict], selectors: Sequence[Selector], saes: Sequence[dict],
                  design: BootstrapDesign) -> dict[str, dict]:
    """``score_selectors`` output with each selector's ``bootstrap`` summary added."""
    points = {name: entry["chosen_l0"] for name, entry in scored.items()}
    for name, summary in bootstrap_selectors(selectors, saes, points, design).items():
        scored[name]["bootstrap"] = summary
    return scored
