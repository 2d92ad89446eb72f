"""Per-family leaderboard figure: each metric vs L0 on log axes, the ground truth, and every selector's choice.

Deterministic PNGs: the Agg backend, a fixed size and dpi, and no "Software" metadata, so the same verdict
gives the same bytes.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from l0eval import atomic  # noqa: E402
from l0eval.metrics.registry import METRICS, PLOT_PANELS  # noqa: E402
from l0eval.selection.selectors import DEFAULT_N_OVER_WIDTH, snd_column, width_fraction_n  # noqa: E402


def _panels(verdict: dict) -> list[tuple[str, str, bool]]:
    table, width = verdict["table"], verdict["width"]
    # (column, label, log y) in panel order; panels a family lacks are left out
    panels = [(name, METRICS[name].label, METRICS[name].log_axis) for name in PLOT_PANELS]
    snd = [(snd_column(n), f"s_n^dec, n={n} ({why})") for n, why in
           ((verdict["hand_n"], "hand-set"),
            (width_fraction_n(width, DEFAULT_N_OVER_WIDTH) if width else None, "paper n/width"))
           if n is not None]
    panels[2:2] = [(column, label, False) for column, label in dict(snd).items()]
    return [p for p in panels if p[0] in table and table[p[0]].notna().any()]


def family_plot(verdict: dict, path: Path) -> Path:
    """Metric panels over a shared log-L0 axis and, below, each selector's choice with its 90% interval."""
    table = verdict["table"]
    panels = _panels(verdict)
    columns = 3
    panel_rows = max(1, math.ceil(len(panels) / columns))
    selectors = list(verdict["selectors"])
    fig = plt.figure(figsize=(12, 2.6 * panel_rows + 0.28 * len(selectors) + 1.2), dpi=80)
    grid = fig.add_gridspec(panel_rows + 1, columns,
                            height_ratios=[2.6] * panel_rows + [0.28 * len(selectors) + 0.6])
    l0 = table["l0"].to_numpy(float)
    limits = (l0.min() / 1.15, l0.max() * 1.15)
    targets = verdict["targets"]
    for index, (column, label, log_y) in enumerate(panels):
        ax = fig.add_subplot(grid[index // columns, index % columns])
        values = table[column].to_numpy(float)
        ax.plot(l0, values, "o-", color="tab:blue", markersize=3)
        _log_x(ax)
        if log_y and (values[np.isfinite(values)] > 0).all():
            ax.set_yscale("log")
        ax.set_xlim(*limits)
        ax.set_title(label, fontsize=9)
        for target in targets:
            ax.axvline(target.l0, color="black", linestyle="--", linewidth=1)
    ax = fig.add_subplot(grid[panel_rows, :])
    _choices_panel(ax, verdict, selectors, limits)
    fig.suptitle(f"{verdict['family']}: {verdict['description']}", fontsize=10)
    fig.subplots_adjust(left=0.21, right=0.98, top=0.94, bottom=0.06, hspace=0.45, wspace=0.25)
    with atomic.replacing(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


def _choices_panel(ax, verdict: dict, selectors: list[str], limits: tuple[float, float]) -> None:
    rows = {row["selector"]: row for row in verdict["rows"]}  # choices and intervals are the same per target
    for y, name in enumerate(selectors):
        row = rows[name]
        if row["chosen_l0"] is None:
            ax.text(limits[0], y, "  none", va="center", fontsize=8, color="gray")
            continue
        if row.get("interval_90"):
            low, high = row["interval_90"]
            ax.plot([low, high], [y, y], color="tab:orange", linewidth=4, alpha=0.5, solid_capstyle="butt")
        ax.plot([row["chosen_l0"]], [y], "D", color="tab:red", markersize=5)
    names_at: dict[float, list[str]] = {}  # targets at one L0 share a line and a label
    for target in verdict["targets"]:
        names_at.setdefault(target.l0, []).append(target.name)
    for l0 in names_at:
        ax.axvline(l0, color="black", linestyle="--", linewidth=1)
    # one title line instead of a label per line: labels of nearby targets overprint each other
    labels = [f"{', '.join(names)} = {l0:.4g}" for l0, names in sorted(names_at.items())]
    ax.set_title("ground truth: " + "; ".join(labels), fontsize=8)
    ax.set_yticks(range(len(selectors)), selectors, fontsize=8)
    ax.set_ylim(-0.7, len(selectors) - 0.1)
    ax.invert_yaxis()
    _log_x(ax)
    ax.set_xlim(*limits)
    ax.set_xlabel("L0 (diamond: choice; bar: bootstrap 90% interval; dashed: ground truth)", fontsize=8)


def _log_x(ax) -> None:
    """Log L0 axis with plain-number ticks and no minor ticks (which also keeps drawing fast)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
