"""L0 selectors: small pure functions from a family's metric table to one chosen L0, and their scoring.

The metric table is a pandas DataFrame with one row per L0 (a member, or the mean over seed
replicates) and at least an ``l0`` column holding the nominal L0; metric columns are looked up by
name (``s_n_dec@12``, ``c_dec``, ``variance_explained``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from kneed import KneeLocator


@dataclass(frozen=True)
class Selector:
    """A named rule that picks an L0 (or None, with a reason, when it cannot decide)."""

    name: str
    description: str
    pick: Callable[[pd.DataFrame], float | None]


def snd_column(n: float) -> str:
    return f"s_n_dec@{int(n) if float(n).is_integer() else n}"


def metric_row(l0: float, metrics: dict, **extra) -> dict:
    """One row of a metric table: the SAE's L0, its flat metrics, and ``s_n_dec`` spread into
    ``s_n_dec@n`` columns."""
    row = {"l0": l0, **extra}
    for name, value in metrics.items():
        if name == "s_n_dec":
            row.update({snd_column(float(n)): v for n, v in value.items()})
        else:
            row[name] = value
    return row


def _finite_rows(table: pd.DataFrame, column: str) -> pd.DataFrame:
    values = pd.to_numeric(table[column], errors="coerce")
    return table[np.isfinite(values.astype(float))]


def argmin_of(column: str) -> Callable[[pd.DataFrame], float | None]:
    def pick(table: pd.DataFrame) -> float | None:
        rows = _finite_rows(table, column)
        return None if rows.empty else float(rows.loc[rows[column].astype(float).idxmin(), "l0"])

    return pick


def kneedle_knee(column: str = "variance_explained") -> Callable[[pd.DataFrame], float | None]:
    """Kneedle (Satopaa et al. 2011, the ``kneed`` package) on ``column`` vs log L0, concave increasing:
    the L0 after which more active latents buy little extra reconstruction."""

    def pick(table: pd.DataFrame) -> float | None:
        rows = _finite_rows(table, column).sort_values("l0")
        if len(rows) < 3:
            return None
        locator = KneeLocator(np.log(rows["l0"].to_numpy(float)), rows[column].to_numpy(float),
                              curve="concave", direction="increasing", S=1.0)
        if locator.knee is None:
            return None
        return float(rows["l0"].to_numpy(float)[np.argmin(np.abs(np.log(rows["l0"].to_numpy(float)) - locator.knee))])

    return pick


def closest_to(target: float) -> Callable[[pd.DataFrame], float | None]:
    """Gemma Scope's "canonical" rule: the L0 closest to ``target`` (ties go to the lower L0)."""

    def pick(table: pd.DataFrame) -> float | None:
        l0 = table["l0"].to_numpy(float)
        return float(l0[np.argmin(np.abs(l0 - target) + 1e-9 * l0)]) if len(l0) else None

    return pick


def default_selectors(snd_n: Sequence[float], canonical_target: float = 100.0) -> list[Selector]:
    selectors = [Selector(f"argmin_s_n_dec@{snd_column(n).split('@')[1]}",
                          f"L0 minimising the nth decoder projection, n={n:g}", argmin_of(snd_column(n)))
                 for n in snd_n]
    selectors += [
        Selector("argmin_c_dec", "L0 minimising mean |cos| between decoder rows", argmin_of("c_dec")),
        Selector("argmin_c_enc", "L0 minimising mean |cos| between encoder columns", argmin_of("c_enc")),
        Selector("rd_knee_kneedle", "Kneedle knee of variance explained vs log L0 (rate-distortion)",
                 kneedle_knee("variance_explained")),
        Selector(f"canonical_{canonical_target:g}", f"L0 closest to {canonical_target:g} (Gemma Scope canonical)",
                 closest_to(canonical_target)),
    ]
    return selectors


def score_selectors(selectors: Sequence[Selector], table: pd.DataFrame, true_l0: float | None,
                    score_column: str | None = None,
                    replicate_tables: Sequence[pd.DataFrame] = ()) -> dict[str, dict]:
    """Each selector's choice on ``table`` and, with a ground truth, its error and the chosen SAE's score.

    ``replicate_tables`` (one per seed replicate) give the spread of choices: how often each selector
    lands within one L0 step of the truth across independent trainings.
    """
    scored = {}
    for selector in selectors:
        chosen = selector.pick(table)
        entry: dict = {"description": selector.description, "chosen_l0": chosen}
        if chosen is None:
            entry["reason"] = "the selector found no decisive point on this family's curve"
        if true_l0 is not None:
            entry["error"] = None if chosen is None else chosen - true_l0
            entry["within_one"] = None if chosen is None else bool(abs(chosen - round(true_l0)) <= 1)
        if score_column is not None and chosen is not None:
            entry[score_column] = float(table.loc[table["l0"] == chosen, score_column].iloc[0])
        if replicate_tables:
            picks = [selector.pick(rep) for rep in replicate_tables]
            entry["replicate_choices"] = picks
            if true_l0 is not None:
                hits = [p is not None and abs(p - round(true_l0)) <= 1 for p in picks]
                entry["replicates_within_one"] = f"{sum(hits)}/{len(hits)}"
        scored[selector.name] = entry
    return scored
