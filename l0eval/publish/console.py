"""Readable console summaries of a results payload (the JSON stays the source of truth)."""

from __future__ import annotations

import pandas as pd

from l0eval.metrics.registry import CONSOLE_COLUMNS, METRICS
from l0eval.selection.selectors import snd_column


def _num(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-2 and value != 0 else f"{value:.{digits}f}"
    return str(value)


def l0_table(results: dict) -> str:
    """The per-L0 metric table (means over seed replicates), beside the ground-truth SAE's VE for toys."""
    by_l0 = pd.DataFrame(results["by_l0"])
    reference = results.get("reference", {}).get("ground_truth_sae", [])
    gt = {row["l0"]: row["variance_explained"] for row in reference}
    columns = {"L0": by_l0["l0"].map(lambda v: f"{v:g}")}
    for column in CONSOLE_COLUMNS:  # columns a family lacks are left out
        header = METRICS[column].header
        if column == "measured_l0" and "feature_recovery" in by_l0:
            continue  # toys: BatchTopK makes the measured L0 equal to k
        if column in by_l0:
            columns[header] = by_l0[column].map(_num)
        if column == "variance_explained" and gt:
            columns["VE(GT SAE)"] = by_l0["l0"].map(lambda k: _num(gt.get(k)))
    for n in results["family"]["selectors"]["snd_n"]:
        columns[f"s_{n}"] = by_l0[snd_column(n)].map(_num)
    if "feature_recovery" in by_l0:
        columns[METRICS["feature_recovery"].header] = by_l0["feature_recovery"].map(_num)
    return pd.DataFrame(columns).to_string(index=False)


def selector_table(results: dict) -> str:
    rows = []
    for name, entry in results["selectors"].items():
        rows.append({"selector": name, "chosen L0": _num(entry["chosen_l0"]), "error": _num(entry.get("error")),
                     "within 1": {True: "yes", False: "no", None: "-"}[entry.get("within_one")],
                     "seeds within 1": entry.get("replicates_within_one", "-"),
                     "recovery of pick": _num(entry.get("feature_recovery"))})
    return pd.DataFrame(rows).to_string(index=False)


def mixing_table(results: dict) -> str:
    """Mean (and, over several seed replicates, std) of feature mixing by rho and k."""
    frame = pd.DataFrame(results["mixing_grid"])
    frame["cell"] = [f"{m:+.3f}" + ("" if s is None or pd.isna(s) else f"±{s:.3f}")
                     for m, s in zip(frame["mean"], frame["std"])]
    grid = frame.pivot(index="rho", columns="l0", values="cell")
    grid.columns = [f"k={c:g}" for c in grid.columns]
    return grid.to_string()


def summary(results: dict) -> str:
    family = results["family"]
    lines = [f"family {family['name']}: {family['description']}"]
    training = results["run"]["training"]
    if training.get("samples_per_sae") is None:
        here = sum(bool(entry.get("trained_here")) for entry in results["saes"])
        lines.append(f"{len(results['saes'])} SAEs loaded ({here} of them trained here by `l0eval train`)")
    else:
        how = "reused cached SAEs" if training.get("reused_cache") else f"trained in {training['train_seconds']:.0f}s"
        lines.append(f"{len(results['saes'])} SAEs, {training['samples_per_sae']:,} samples each, {how}")
    if family["kind"] == "toy-mixing":
        lines += ["", "feature mixing (mean cos of latents j != 0 with feature 0) by rho and k:", mixing_table(results)]
        return "\n".join(lines)
    gt = results["ground_truth"]
    if gt.get("true_l0") is None:
        lines.append(f"no ground truth: {gt['reason']}")
    else:
        lines.append(f"true L0 = {gt['true_l0']:.4f} (measured on the evaluation set: {gt['true_l0_measured']:.3f})")
    if gt.get("targets"):
        lines.append("targets: " + ", ".join(f"{t['name']} {t['l0']:.3g}" for t in gt["targets"])
                     + f" ({gt['targets_note']})")
    lines += ["", l0_table(results), "", "L0 chosen by each selector:", selector_table(results)]
    return "\n".join(lines)
