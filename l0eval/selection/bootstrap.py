"""How sure is each selector's choice? A bootstrap over evaluation batches and seed replicates.

Each resample draws the evaluation batches with replacement (the same draw for every SAE: all SAEs saw
the same batches, so the draw is paired) and, for families with several seed replicates, the replicates
with replacement; it rebuilds the family's per-L0 table from the members' per-batch metric values
(``saes[i].batches``, written by the runs) and applies every selector to it. Metrics of the weights alone
(c_dec, c_enc, feature recovery) vary only through the replicate draw. Families whose results have no
per-batch values (written before they were recorded) are resampled over replicates only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from l0eval.selection.selectors import Selector, metric_row

# A selector's choice is "indistinguishable" from every other L0 it picks in at least this share of resamples.
INDISTINGUISHABLE_SHARE = 0.05


@dataclass(frozen=True)
class BootstrapDesign:
    resamples: int = 200
    seed: int = 0

    def record(self, batches: int, replicates: int) -> dict:
        """What a results file says about the bootstrap (``run.bootstrap``)."""
        return {"resamples": self.resamples, "seed": self.seed, "rng": "numpy default_rng(seed)",
                "evaluation_batches": batches, "seed_replicates": replicates,
                "unit": "evaluation batches (the same draw for every SAE) and seed replicates, with replacement",
                "indistinguishable_share": INDISTINGUISHABLE_SHARE}


def member_l0(entry: dict) -> float:
    """The sweep axis of a member: its nominal L0 (k), else its measured L0."""
    return float(entry["nominal_l0"] if entry.get("nominal_l0") is not None else entry["measured_l0"])


def member_table(saes: Sequence[dict]) -> pd.DataFrame:
    """One row per member: ``l0``, ``seed`` (0 when the family has no replicates) and its flat metrics."""
    frame = pd.DataFrame([metric_row(member_l0(entry), entry["metrics"], seed=entry.get("seed") or 0)
                          for entry in saes])
    return frame.apply(pd.to_numeric, errors="coerce")  # a metric that is not a number cannot be averaged


def batch_matrices(saes: Sequence[dict]) -> dict[str, np.ndarray]:
    """Per-batch values as column name -> [members, batches]; empty unless every member has them, equally many."""
    if not saes or any("batches" not in entry for entry in saes):
        return {}
    rows = [metric_row(0.0, entry["batches"]) for entry in saes]
    columns = [c for c in rows[0] if c != "l0"]
    try:
        matrices = {c: np.array([row[c] for row in rows], dtype=float) for c in columns}
    except (KeyError, ValueError):  # ragged or missing per-batch values: resample replicates only
        return {}
    return {c: m for c, m in matrices.items() if m.ndim == 2 and np.isfinite(m).all()}


def resampled_tables(saes: Sequence[dict], design: BootstrapDesign):
    """Yield ``design.resamples`` per-L0 tables, each from one draw of batches and seed replicates.

    Each table is the mean over the drawn replicates (with multiplicity) of every member's metrics, with
    the per-batch metrics averaged over the drawn batches; missing values are skipped, as pandas does."""
    members = member_table(saes)
    matrices = batch_matrices(saes)
    n_batches = next(iter(matrices.values())).shape[1] if matrices else 1
    columns = [c for c in members.columns if c not in ("l0", "seed")]
    resampled = [columns.index(c) for c in matrices]
    stacked = np.stack(list(matrices.values())) if matrices else np.empty((0, len(members), 1))
    grid, group = np.unique(members["l0"].to_numpy(float), return_inverse=True)
    replicates, replicate_of = np.unique(members["seed"].to_numpy(float), return_inverse=True)
    static = members[columns].to_numpy(float)
    rng = np.random.default_rng(design.seed)
    for _ in range(design.resamples):
        batch_draw = rng.integers(0, n_batches, n_batches)
        seed_draw = rng.integers(0, len(replicates), len(replicates)) if len(replicates) > 1 else np.zeros(1, int)
        values = static.copy()
        values[:, resampled] = stacked[:, :, batch_draw].mean(axis=2).T
        weights = np.bincount(seed_draw, minlength=len(replicates))[replicate_of][:, None] * np.isfinite(values)
        sums, totals = np.zeros((len(grid), len(columns))), np.zeros((len(grid), len(columns)))
        np.add.at(sums, group, np.where(weights > 0, values, 0.0) * weights)
        np.add.at(totals, group, weights)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums / totals
        yield pd.DataFrame({"l0": grid, **dict(zip(columns, means.T))})


def bootstrap_choices(selectors: Sequence[Selector], saes: Sequence[dict],
                      design: BootstrapDesign) -> dict[str, list[float | None]]:
    choices: dict[str, list[float | None]] = {s.name: [] for s in selectors}
    for table in resampled_tables(saes, design):
        for selector in selectors:
            choices[selector.name].append(selector.pick(table))
    return choices


def summarise_choices(choices: Sequence[float | None], point: float | None) -> dict:
    """The bootstrap distribution of one selector's choice: 90% interval, how often the point choice came
    back, and every L0 picked in at least ``INDISTINGUISHABLE_SHARE`` of resamples (``plausible_l0s``:
    more than one means the data cannot tell those L0s apart for this selector)."""
    decided = np.array([c for c in choices if c is not None], dtype=float)
    if decided.size == 0:
        return {"interval_90": None, "point_share": 0.0, "plausible_l0s": [], "undecided_share": 1.0}
    values, counts = np.unique(decided, return_counts=True)
    shares = counts / len(choices)
    low, high = np.quantile(decided, [0.05, 0.95], method="inverted_cdf")
    return {"interval_90": [float(low), float(high)],
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
