"""L0 selectors: small pure functions from a family's metric table to one chosen L0, and their scoring.

The metric table is a pandas DataFrame with one row per L0 (a member, or the mean over seed
replicates) and at least an ``l0`` column holding the nominal L0; metric columns are looked up by
name (``s_n_dec@12``, ``c_dec``, ``variance_explained``, ...).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

# The paper's LLM setting, n = 12000 for width 32768: the default n for s_n^dec when a family names none.
DEFAULT_N_OVER_WIDTH = 12000 / 32768


@dataclass(frozen=True)
class Selector:
    """A named rule that picks an L0 (or None, with a reason, when it cannot decide)."""

    name: str
    description: str
    pick: Callable[[pd.DataFrame], float | None]
    label: str = "proxy"  # proxy | oracle | post_hoc | baseline (docs/selectors.md)
    needs: tuple[str, ...] = ()  # metric columns that files from before the metric existed lack
    reads: str = ""  # a column prefix: the rule reads columns named so, and none exist where it never ran

    def applies_to(self, table: pd.DataFrame) -> bool:
        """False where the table never measured what this rule reads (not run, rather than undecided)."""
        return (all(column in table for column in self.needs)
                and (not self.reads or any(str(column).startswith(self.reads) for column in table)))


SND = "s_n_dec@"  # the prefix of every s_n^dec column (``snd_column``)


def snd_column(n: float, metric: str = "s_n_dec") -> str:
    """The table column of ``metric`` (``s_n_dec`` or ``s_n_dec_alive``) at n."""
    return f"{metric}@{int(n) if float(n).is_integer() else n}"


def metric_row(l0: float, metrics: dict, **extra) -> dict:
    """One row of a metric table: the SAE's L0 (the sweep axis), its flat metrics, and ``s_n_dec`` (and
    ``s_n_dec_alive``) spread into ``s_n_dec@n`` (``s_n_dec_alive@n``) columns. The L0 the metrics measured
    goes under ``measured_l0``: it must not replace the axis, or SAEs of one nominal L0 (seed replicates,
    threshold SAEs) would land on different rows."""
    row = {"l0": l0, **extra}
    for name, value in metrics.items():
        if name in ("s_n_dec", "s_n_dec_alive"):
            row.update({snd_column(float(n), name): v for n, v in value.items()})
        else:
            row["measured_l0" if name == "l0" else name] = value
    return row


def numbers(table: pd.DataFrame, column: str) -> np.ndarray:
    """``table[column]`` as floats, anything that is not a number as NaN. A bootstrap calls the selectors on
    every resample, so a column that is numeric already (every table l0eval builds) is read as it is:
    ``pd.to_numeric`` on it was most of a verdict's time."""
    series = table[column]
    if not pd.api.types.is_numeric_dtype(series.dtype):
        series = pd.to_numeric(series, errors="coerce")
    return series.to_numpy(dtype=float, na_value=np.nan)


def _finite_rows(table: pd.DataFrame, column: str) -> pd.DataFrame:
    return table[np.isfinite(numbers(table, column))]


def argmin_of(column: str) -> Callable[[pd.DataFrame], float | None]:
    def pick(table: pd.DataFrame) -> float | None:
        if column not in table:
            return None  # not measured for this family (e.g. an n beyond its width)
        return _l0_of_minimum(numbers(table, "l0"), numbers(table, column))

    return pick


def _l0_of_minimum(l0: np.ndarray, values: np.ndarray) -> float | None:
    """The L0 of the smallest finite value (the first such row on ties), None if none is finite."""
    finite = np.flatnonzero(np.isfinite(values))
    return float(l0[finite[np.argmin(values[finite])]]) if finite.size else None


def kneedle_knee(column: str = "variance_explained") -> Callable[[pd.DataFrame], float | None]:
    """Kneedle (Satopaa et al. 2011, the ``kneed`` package) on ``column`` vs log L0, concave increasing:
    the L0 after which more active latents buy little extra reconstruction."""

    def pick(table: pd.DataFrame) -> float | None:
        from kneed import KneeLocator  # here, not at the top: it imports scipy.signal and matplotlib (~2 s), and
        # listing families imports this module for its constants

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


# On log axes, FVU below this fraction of the family's worst FVU is treated as perfect reconstruction:
# its log is noise (toys reach 1e-6) that would outweigh the real bend of the rate-distortion curve.
FVU_FLOOR_FRACTION = 0.01


def _unexplained(table: pd.DataFrame) -> np.ndarray:
    """FVU per row (centred); 1 - variance explained where a table has no FVU."""
    if "fvu" in table:
        fvu = numbers(table, "fvu")
        if not np.isnan(fvu).any():
            return fvu
    return 1.0 - numbers(table, "variance_explained")


def _rate_distortion_curve(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(L0, FVU) sorted by L0, FVU replaced by its running minimum: the Pareto frontier, since a larger L0
    that reconstructs worse buys nothing (a training fluke, not a point of the curve)."""
    fvu, l0 = _unexplained(table), numbers(table, "l0")
    finite = np.isfinite(fvu)
    order = np.argsort(l0[finite])  # a table has one row per L0
    return l0[finite][order], np.minimum.accumulate(fvu[finite][order])


def max_curvature_knee(table: pd.DataFrame) -> float | None:
    """The L0 of maximum curvature of log FVU vs log L0: the elbow of the rate-distortion curve on log-log
    axes. Each interior point's curvature is the Menger curvature of the triangle it forms with its two
    neighbours (4 area / product of the sides: exact for a polyline on an uneven L0 grid); only points
    where the curve bends upwards (falling, then flattening) count. FVU floored at ``FVU_FLOOR_FRACTION``
    of its maximum."""
    l0, fvu = _rate_distortion_curve(table)
    if len(l0) < 3:
        return None
    points = np.column_stack([np.log(l0), np.log(np.maximum(fvu, FVU_FLOOR_FRACTION * fvu.max()))])
    before, here, after = points[:-2], points[1:-1], points[2:]
    incoming, outgoing = here - before, after - here
    turn = incoming[:, 0] * outgoing[:, 1] - incoming[:, 1] * outgoing[:, 0]  # > 0: an upward bend
    sides = (np.linalg.norm(incoming, axis=1) * np.linalg.norm(outgoing, axis=1)
             * np.linalg.norm(after - before, axis=1))
    curvature = 2.0 * turn / sides
    if not (curvature > 1e-9).any():
        return None
    return float(l0[1 + int(np.argmax(curvature))])


def reconstruction_budget(gain: float = 0.9) -> Callable[[pd.DataFrame], float | None]:
    """Best reconstruction at a budget: the smallest L0 that already achieves ``gain`` of the family's whole
    reconstruction improvement, FVU <= FVU_max - gain (FVU_max - FVU_min). Rate-distortion with a
    diminishing-returns cut-off: past it, more active latents buy less than (1 - gain) of the range."""

    def pick(table: pd.DataFrame) -> float | None:
        l0, fvu = _rate_distortion_curve(table)
        if len(l0) < 2:
            return None
        threshold = fvu.max() - gain * (fvu.max() - fvu.min())
        return float(l0[np.argmax(fvu <= threshold)])

    return pick


def self_consistent_n(l0: float) -> int:
    """The n that the self-consistent s_n^dec rule reads for a candidate L0: the smallest integer above it."""
    return int(np.floor(l0)) + 1


def snd_self_consistent(table: pd.DataFrame, interior: bool = False) -> float | None:
    """s_n^dec with n chosen from the family's own L0s, no hand-set n.

    The paper's argmin of s_n^dec finds the true L0 when n sits just above it (and drifts away when n is
    below it). So test each candidate L0 k with n_k = floor(k) + 1: k is self-consistent when
    argmin_L0 s_{n_k}^dec is k itself. The smallest self-consistent k is chosen; if none is, the candidate
    whose argmin lands nearest itself (in log L0; ties to the lower L0). Candidates whose s_{n_k} was not
    measured are skipped. ``interior``: an argmin at either end of the L0 grid is no dip (the curve just
    falls or rises across the sweep), so such candidates are skipped too.
    """
    grid = numbers(table, "l0")
    ends = {grid.min(), grid.max()} if interior and grid.size else set()
    candidates = []
    for l0 in sorted(grid):
        column = snd_column(self_consistent_n(l0))
        if column in table:
            landed = _l0_of_minimum(grid, numbers(table, column))
            if landed is not None and landed not in ends:
                candidates.append((abs(np.log(landed) - np.log(l0)), l0))
    return min(candidates)[1] if candidates else None


# n / width of the s_n^dec columns that LLM families always measure; the paper's n sits at 12000/32768.
SND_WIDTH_FRACTIONS = (0.05, 0.1, 0.25, 0.5)


def width_fraction_n(width: int, fraction: float) -> int:
    return min(width - 1, max(1, round(fraction * width)))


def snd_width_aggregate(width: int) -> Callable[[pd.DataFrame], float | None]:
    """s_n^dec aggregated over n/width in ``SND_WIDTH_FRACTIONS`` (no hand-set n): each n's curve min-max
    normalised across L0 (so every n weighs the same), averaged, argmin."""
    columns = [snd_column(width_fraction_n(width, f)) for f in SND_WIDTH_FRACTIONS]

    def pick(table: pd.DataFrame) -> float | None:
        present = [c for c in dict.fromkeys(columns) if c in table]
        if not present:
            return None
        curves = np.column_stack([numbers(table, c) for c in present])  # [L0s, n]
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column or row: skipped, as pandas does
            low = np.nanmin(curves, axis=0)
            spread = np.nanmax(curves, axis=0) - low
            score = np.nanmean((curves - low) / np.where(spread == 0.0, np.nan, spread), axis=1)
        return _l0_of_minimum(numbers(table, "l0"), score)

    return pick


def grid_end(largest: bool) -> Callable[[pd.DataFrame], float | None]:
    """A constant baseline: the smallest (or largest) L0 of the grid, whatever the metrics say."""

    def pick(table: pd.DataFrame) -> float | None:
        l0 = table["l0"].to_numpy(float)
        return float(l0.max() if largest else l0.min()) if len(l0) else None

    return pick


def grid_middle(table: pd.DataFrame) -> float | None:
    """A constant baseline: the grid's middle L0 (index floor((m - 1) / 2) of the m sorted L0s)."""
    l0 = np.sort(table["l0"].to_numpy(float))
    return float(l0[(len(l0) - 1) // 2]) if len(l0) else None


def baseline_selectors(canonical_target: float = 100.0) -> list[Selector]:
    """The constants every selector must beat (docs/selectors.md#baselines); chance is scored by the verdict."""
    return [
        Selector("baseline_smallest_l0", "always the grid's smallest L0 (baseline)", grid_end(largest=False),
                 "baseline"),
        Selector("baseline_largest_l0", "always the grid's largest L0 (baseline)", grid_end(largest=True), "baseline"),
        Selector("baseline_grid_middle", "always the grid's middle L0 (baseline)", grid_middle, "baseline"),
        Selector(f"canonical_{canonical_target:g}", f"L0 closest to {canonical_target:g} (Gemma Scope canonical; "
                 "a constant baseline)", closest_to(canonical_target), "baseline"),
    ]


def default_selectors(snd_n: Sequence[float], canonical_target: float = 100.0,
                      width: int | None = None, hand_n_oracle: bool = False) -> list[Selector]:
    """The family's hand-set-n s_n^dec rules (labelled oracle with ``hand_n_oracle``: the n was set from the
    true L0), then every other selector (n-free s_n^dec variants, the cosine proxies, their live-latent
    versions, three rate-distortion rules) and the constant baselines. ``width`` (the SAE's d_sae) enables
    the paper-ratio and width-aggregate s_n^dec rules."""
    hand_label = "oracle" if hand_n_oracle else "proxy"
    selectors = [Selector(f"argmin_s_n_dec@{snd_column(n).split('@')[1]}",
                          f"L0 minimising the nth decoder projection, n={n:g}"
                          + (" (oracle: n set from the true L0)" if hand_n_oracle else ""),
                          argmin_of(snd_column(n)), hand_label, reads=SND)
                 for n in snd_n]
    if width is not None:
        paper_n = width_fraction_n(width, DEFAULT_N_OVER_WIDTH)
        selectors += [
            Selector("argmin_s_n_dec@paper_ratio", f"L0 minimising s_n^dec at the paper's n/width = 12000/32768 "
                     f"(n={paper_n})", argmin_of(snd_column(paper_n)), reads=SND),
            Selector("argmin_s_n_dec@paper_ratio_alive", f"as argmin_s_n_dec@paper_ratio over live latents only "
                     f"(n={paper_n})", argmin_of(snd_column(paper_n, "s_n_dec_alive")),
                     needs=(snd_column(paper_n, "s_n_dec_alive"),)),
            Selector("s_n_dec_width_aggregate", "argmin of s_n^dec min-max normalised and averaged over n/width "
                     f"in {list(SND_WIDTH_FRACTIONS)}", snd_width_aggregate(width), reads=SND),
        ]
    selectors += [
        Selector("s_n_dec_self_consistent", "smallest L0 k that minimises s_n^dec at n = floor(k) + 1",
                 snd_self_consistent, reads=SND),
        Selector("s_n_dec_self_consistent_interior", "as s_n_dec_self_consistent, ignoring argmins at either end "
                 "of the L0 grid (post-hoc: added after the toy sweep showed boundary fixed points)",
                 functools.partial(snd_self_consistent, interior=True), "post_hoc", reads=SND),
        Selector("argmin_c_dec", "L0 minimising mean |cos| between decoder rows", argmin_of("c_dec")),
        Selector("argmin_c_dec_alive", "L0 minimising mean |cos| between the decoder rows of live latents",
                 argmin_of("c_dec_alive"), needs=("c_dec_alive",)),
        Selector("argmin_c_enc", "L0 minimising mean |cos| between encoder columns", argmin_of("c_enc")),
        Selector("rd_knee_kneedle", "Kneedle knee of variance explained vs log L0 (rate-distortion)",
                 kneedle_knee("variance_explained")),
        Selector("rd_knee_max_curvature", "maximum curvature of log FVU vs log L0 (rate-distortion elbow)",
                 max_curvature_knee),
        Selector("rd_budget_90", "smallest L0 achieving 90% of the family's FVU reduction (reconstruction budget)",
                 reconstruction_budget(0.9)),
        *baseline_selectors(canonical_target),
    ]
    return selectors


def grid_step(grid: np.ndarray, l0: float) -> int:
    """Index of the grid L0 nearest ``l0`` in log L0: errors are counted in these steps."""
    return int(np.argmin(np.abs(np.log(grid) - np.log(l0))))


def score_selectors(selectors: Sequence[Selector], table: pd.DataFrame, true_l0: float | None,
                    score_column: str | None = None,
                    replicate_tables: Sequence[pd.DataFrame] = ()) -> dict[str, dict]:
    """Each selector's choice on ``table`` and, with a ground truth, its error (in L0 and in grid steps)
    and the chosen SAE's score.

    ``replicate_tables`` (one per seed replicate) give the seed spread: each replicate's choice and how
    often it lands within one grid step of the truth across independent trainings.
    """
    grid = table["l0"].to_numpy(float)

    def within_one(chosen: float | None) -> bool:
        return chosen is not None and abs(grid_step(grid, chosen) - grid_step(grid, true_l0)) <= 1

    scored = {}
    for selector in selectors:
        chosen = selector.pick(table)
        entry: dict = {"description": selector.description, "label": selector.label, "chosen_l0": chosen}
        if chosen is None:
            entry["reason"] = "the selector found no decisive point on this family's curve"
        if true_l0 is not None:
            entry["error"] = None if chosen is None else chosen - true_l0
            entry["error_steps"] = None if chosen is None else grid_step(grid, chosen) - grid_step(grid, true_l0)
            entry["within_one"] = None if chosen is None else within_one(chosen)
        if score_column is not None and chosen is not None:
            entry[score_column] = float(table.loc[table["l0"] == chosen, score_column].iloc[0])
        if replicate_tables:
            picks = [selector.pick(rep) for rep in replicate_tables]
            entry["replicate_choices"] = picks
            if true_l0 is not None:
                entry["replicates_within_one"] = f"{sum(within_one(p) for p in picks)}/{len(picks)}"
        scored[selector.name] = entry
    return scored


def snd_n_values(l0s: Sequence[float], width: int, snd_n: Sequence[float] = ()) -> list[int]:
    """Every n at which s_n^dec must be measured for ``default_selectors``: the hand-set ``snd_n``, the
    paper's n/width, the width-aggregate's n, and the self-consistent rule's n just above each L0."""
    needed = {*(int(n) for n in snd_n), width_fraction_n(width, DEFAULT_N_OVER_WIDTH),
              *(width_fraction_n(width, f) for f in SND_WIDTH_FRACTIONS),
              *(self_consistent_n(l0) for l0 in l0s)}
    return sorted(n for n in needed if 1 <= n < width)
