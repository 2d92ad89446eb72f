"""Per-family leaderboard figure: each metric's curve over L0 (log axes, seed spread shaded), every selector's
pick marked on every curve, the targets drawn and labelled, the residual-stream probing baseline where the
family has one, and below, each selector's choice with its bootstrap interval.

Deterministic PNGs: the Agg backend, a fixed size and dpi, and no "Software" metadata, so the same verdict
gives the same bytes.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import matplotlib.patches
import matplotlib.ticker
import matplotlib.transforms

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from l0eval import atomic  # noqa: E402
from l0eval.metrics.registry import METRICS, PLOT_PANELS  # noqa: E402
from l0eval.selection.selectors import DEFAULT_N_OVER_WIDTH, metric_row, snd_column, width_fraction_n  # noqa: E402

# the registry's panels, plus dead latents: a pick at an L0 where most latents are dead is worth seeing
PANELS = (*PLOT_PANELS, "dead_fraction")
# residual-stream baselines drawn in a metric's panel: (downstream_baselines key, column there, label)
BASELINES = {"sparse_probing_k1": ("residual_top_k", "sparse_probing_k1", "residual stream, top-1 channel"),
             "sparse_probing_k16": ("residual_top_k", "sparse_probing_k16", "residual stream, top-16 channels")}
# a colour and marker per selector, in the verdict's selector order (20 distinct before they repeat)
COLOURS = [plt.get_cmap("tab20")(i) for i in (0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19)]
MARKERS = "oDs^vP*XhpH<>d8"
TARGET_COLOUR = "black"


def _panels(verdict: dict) -> list[tuple[str, str, bool]]:
    table, width = verdict["table"], verdict["width"]
    # (column, label, log y) in panel order; panels a family lacks are left out
    panels = [(name, METRICS[name].label, METRICS[name].log_axis) for name in PANELS]
    snd = [(snd_column(n), f"s_n^dec, n={n} ({why})") for n, why in
           ((verdict["hand_n"], "hand-set"),
            (width_fraction_n(width, DEFAULT_N_OVER_WIDTH) if width else None, "paper n/width"))
           if n is not None]
    panels[2:2] = [(column, label, False) for column, label in dict(snd).items()]
    return [p for p in panels if p[0] in table and table[p[0]].notna().any()]


def seed_spread(results: dict) -> pd.DataFrame | None:
    """Per L0, the min and max of every metric column over seed replicates (None: a single replicate)."""
    saes = results.get("saes", [])
    if len({entry.get("seed") for entry in saes}) < 2:
        return None
    rows = [metric_row(entry["nominal_l0"] if entry.get("nominal_l0") is not None else entry["measured_l0"],
                       entry["metrics"]) for entry in saes]
    frame = pd.DataFrame(rows).apply(pd.to_numeric, errors="coerce")
    return frame.groupby("l0").agg(["min", "max"])


def family_plot(verdict: dict, results: dict, path: Path) -> Path:
    """Metric panels over a shared log-L0 axis, a legend of the selectors and, below, each selector's choice
    with its 90% interval."""
    panels = _panels(verdict)
    columns = 3
    panel_rows = max(1, math.ceil(len(panels) / columns))
    selectors = list(verdict["selectors"])
    choices_height = 0.3 * len(selectors) + 0.9
    fig = plt.figure(figsize=(13, 2.9 * panel_rows + choices_height + 1.6), dpi=80)
    grid = fig.add_gridspec(panel_rows + 1, columns, height_ratios=[2.9] * panel_rows + [choices_height])
    limits = _l0_limits(verdict["table"])
    spread = seed_spread(results)
    picks = _picks(verdict, selectors)
    for index, panel in enumerate(panels):
        ax = fig.add_subplot(grid[index // columns, index % columns])
        _metric_panel(ax, verdict, results, panel, spread, picks, limits)
    _choices_panel(fig.add_subplot(grid[panel_rows, :]), verdict, selectors, limits)
    handles = [plt.Line2D([], [], linestyle="none", marker=MARKERS[i % len(MARKERS)], color=COLOURS[i % len(COLOURS)],
                          markersize=6, label=name) for i, name in enumerate(selectors)]
    if spread is not None:
        handles.append(matplotlib.patches.Patch(color="tab:blue", alpha=0.2, label="min-max over seed replicates"))
    fig.legend(handles=handles, loc="upper center", ncol=min(6, len(handles)), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 1 - 0.35 / fig.get_figheight()), title="selector picks (marked on every curve)",
               title_fontsize=8)
    fig.suptitle(f"{verdict['family']}: {verdict['description']}", fontsize=11, y=1 - 0.08 / fig.get_figheight())
    top = 1 - (1.5 if len(handles) > 6 else 1.2) / fig.get_figheight()
    fig.subplots_adjust(left=0.17, right=0.98, top=top, bottom=0.5 / fig.get_figheight(), hspace=0.5, wspace=0.25)
    with atomic.replacing(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


def _l0_limits(table: pd.DataFrame) -> tuple[float, float]:
    l0 = table["l0"].to_numpy(float)
    return l0.min() / 1.2, l0.max() * 1.2


def _picks(verdict: dict, selectors: list[str]) -> dict[float, list[int]]:
    """Chosen L0 -> indices of the selectors that chose it (one choice per selector, whatever the target)."""
    chosen: dict[str, float | None] = {}
    for row in verdict["rows"]:
        chosen.setdefault(row["selector"], row.get("chosen_l0"))
    picks: dict[float, list[int]] = {}
    for index, name in enumerate(selectors):
        if chosen.get(name) is not None:
            picks.setdefault(float(chosen[name]), []).append(index)
    return picks


def _metric_panel(ax, verdict: dict, results: dict, panel: tuple[str, str, bool], spread: pd.DataFrame | None,
                  picks: dict[float, list[int]], limits: tuple[float, float]) -> None:
    column, label, log_y = panel
    table = verdict["table"]
    l0, values = table["l0"].to_numpy(float), table[column].to_numpy(float)
    ax.plot(l0, values, "-", color="tab:blue", linewidth=1.5, zorder=2)
    if spread is not None and column in spread:
        band = spread[column].reindex(l0)
        ax.fill_between(l0, band["min"].to_numpy(float), band["max"].to_numpy(float), color="tab:blue", alpha=0.2,
                        linewidth=0, zorder=1)
    _baseline(ax, results, column)
    _log_axis(ax.xaxis, ax.set_xscale)
    finite = values[np.isfinite(values)]
    if log_y and (finite > 0).all():
        _log_axis(ax.yaxis, ax.set_yscale, decades=float(np.log10(finite.max() / finite.min())))
    ax.set_xlim(*limits)
    ax.margins(y=0.3)  # room above the curve for the stacked picks
    _targets(ax, verdict, column)
    _mark_picks(ax, l0, values, picks)
    ax.set_title(label, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(True, which="major", color="0.9", linewidth=0.6, zorder=0)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best", frameon=False)


def _baseline(ax, results: dict, column: str) -> None:
    if column not in BASELINES:
        return
    key, name, text = BASELINES[column]
    value = results.get("downstream_baselines", {}).get(key, {}).get(name)
    if value is not None:
        ax.axhline(value, color="tab:green", linestyle=":", linewidth=1.5, label=text, zorder=1)


def _targets(ax, verdict: dict, column: str) -> None:
    """Every target as a vertical line; labelled where it belongs (its own metric's panel, or the true L0 in
    every panel), so nearby targets do not print over each other."""
    for target in verdict["targets"]:
        own = target.name == "true_l0" or target.name == column
        ax.axvline(target.l0, color=TARGET_COLOUR if own else "0.7", linestyle="--", linewidth=1.2 if own else 0.8,
                   zorder=1)
        if own:
            name = "true L0" if target.name == "true_l0" else ("best" if target.higher_is_better else "lowest")
            low, high = np.log(ax.get_xlim()) if ax.get_xlim()[0] > 0 else (0.0, 1.0)
            right_half = (np.log(target.l0) - low) > 0.6 * (high - low)  # label on the side with room
            ax.annotate(f"{name} {target.l0:.4g}", xy=(target.l0, 0), xycoords=("data", "axes fraction"),
                        xytext=(-3 if right_half else 3, 3), textcoords="offset points", fontsize=7, va="bottom",
                        ha="right" if right_half else "left", color=TARGET_COLOUR,
                        bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})


def _mark_picks(ax, l0: np.ndarray, values: np.ndarray, picks: dict[float, list[int]]) -> None:
    """Each selector's pick on the curve; selectors that chose the same L0 stack upwards from the point."""
    for chosen, indices in picks.items():
        hit = np.flatnonzero(np.isclose(l0, chosen))
        if hit.size == 0 or not np.isfinite(values[hit[0]]):
            continue
        for level, index in enumerate(indices):
            offset = matplotlib.transforms.offset_copy(ax.transData, fig=ax.figure, x=0, y=7 * level, units="points")
            ax.plot([chosen], [values[hit[0]]], linestyle="none", marker=MARKERS[index % len(MARKERS)],
                    color=COLOURS[index % len(COLOURS)], markersize=5, markeredgecolor="black",
                    markeredgewidth=0.4, transform=offset, zorder=3, clip_on=False)


def _choices_panel(ax, verdict: dict, selectors: list[str], limits: tuple[float, float]) -> None:
    rows = {}
    for row in verdict["rows"]:  # choices and intervals are the same for every target
        rows.setdefault(row["selector"], row)
    for y, name in enumerate(selectors):
        row = rows[name]
        colour = COLOURS[y % len(COLOURS)]
        if row.get("chosen_l0") is None:
            ax.text(limits[0], y, "  none", va="center", fontsize=8, color="gray")
            continue
        if row.get("interval_90"):
            low, high = row["interval_90"]
            ax.plot([low, high], [y, y], color=colour, linewidth=5, alpha=0.45, solid_capstyle="butt")
        spread = [value for value in (row.get("seed_spread") or []) if value is not None]
        if spread:
            ax.plot(spread, [y] * len(spread), "|", color="black", markersize=7)
        ax.plot([row["chosen_l0"]], [y], linestyle="none", marker=MARKERS[y % len(MARKERS)], color=colour,
                markeredgecolor="black", markeredgewidth=0.4, markersize=7)
    names_at: dict[float, list[str]] = {}  # targets at one L0 share a line and a label
    for target in verdict["targets"]:
        names_at.setdefault(target.l0, []).append(target.name)
    for l0 in names_at:
        ax.axvline(l0, color=TARGET_COLOUR, linestyle="--", linewidth=1)
    # one title line instead of a label per line: labels of nearby targets overprint each other
    labels = [f"{', '.join(names)} = {l0:.4g}" for l0, names in sorted(names_at.items())]
    ax.set_title("each selector's choice; ground truth (dashed): " + ("; ".join(labels) or "none"), fontsize=9)
    ax.set_yticks(range(len(selectors)), selectors, fontsize=8)
    ax.set_ylim(-0.7, len(selectors) - 0.3)
    ax.invert_yaxis()
    _log_axis(ax.xaxis, ax.set_xscale)
    ax.set_xlim(*limits)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(True, axis="x", color="0.9", linewidth=0.6)
    ax.set_xlabel("L0 (marker: choice; bar: bootstrap 90% interval; ticks: choice on each seed replicate)",
                  fontsize=8)


def _log_axis(axis, set_scale, decades: float = 1.0) -> None:
    """A log axis with plain-number ticks (at 1, 2 and 5 per decade over up to two decades, else one per decade)
    and no minor ticks (which also keeps drawing fast)."""
    set_scale("log")
    axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0) if decades <= 2 else (1.0,),
                                                        numticks=12))
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_locator(matplotlib.ticker.NullLocator())
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
