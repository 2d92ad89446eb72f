"""A family's per-L0 table and every selector's choice on it, from its per-SAE ``saes`` entries."""

from __future__ import annotations

import pandas as pd

from l0eval.selection.bootstrap import BootstrapDesign, add_bootstrap
from l0eval.selection.selectors import default_selectors, metric_row, score_selectors


def sweep_verdict(entries: list[dict], snd_n: list[int], width: int,
                  selectors_apply: bool = True) -> tuple[pd.DataFrame, dict]:
    """The per-L0 table (mean over SAEs sharing an L0) and every selector's choice with its bootstrap over
    evaluation batches; no selectors when the s_n^dec/core pass did not run. Also rebuilds a family that
    the Ray executor ran in shards."""
    rows = [metric_row(e["nominal_l0"] if e["nominal_l0"] is not None else e["measured_l0"], e["metrics"])
            for e in entries]
    table = pd.DataFrame(rows).groupby("l0", as_index=False).mean()
    if not selectors_apply:
        return table, {}
    selectors = default_selectors(snd_n, width=width)
    return table, add_bootstrap(score_selectors(selectors, table, None), selectors, entries, BootstrapDesign())
