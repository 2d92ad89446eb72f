"""Readable console summaries of a results payload (the JSON stays the source of truth)."""

from __future__ import annotations

import pandas as pd

from l0eval.heuristics import snd_column


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-2 and value != 0 else f"{value:.{digits}f}"
    return str(value)


def l0_table(results: dict) -> str:
    """Per-L0 means over seed replicates, beside the ground-truth SAE's variance explained."""
    by_l0 = pd.DataFrame(results["by_l0"])
    reference = results.get("reference", {}).get("ground_truth_sae", [])
    gt = {row["l0"]: row["variance_explained"] for row in reference}
    snd_cols = [snd_column(n) for n in results["family"]["selectors"]["snd_n"]]
    table = pd.DataFrame({
        "L0": by_l0["l0"].map(lambda v: f"{v:g}"),
        "VE": by_l0["variance_explained"].map(_fmt),
        "VE(GT SAE)": by_l0["l0"].map(lambda k: _fmt(gt.get(k))),
        "MSE": by_l0["mse"].map(_fmt),
        "c_dec": by_l0["c_dec"].map(_fmt),
        "c_enc": by_l0["c_enc"].map(_fmt),
        **{col.replace("s_n_dec@", "s_"): by_l0[col].map(_fmt) for col in snd_cols},
        "recovery": by_l0["feature_recovery"].map(_fmt),
    })
    return table.to_string(index=False)


def selector_table(results: dict) -> str:
    rows = []
    for name, entry in results["selectors"].items():
        rows.append({"selector": name, "chosen L0": _fmt(entry["chosen_l0"]), "error": _fmt(entry.get("error")),
                     "within 1": {True: "yes", False: "no", None: "-"}[entry.get("within_one")],
                     "seeds within 1": entry.get("replicates_within_one", "-"),
                     "recovery of pick": _fmt(entry.get("feature_recovery"))})
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
        lines.append(f"{len(results['saes'])} SAEs loaded (not trained here)")
    else:
        how = "reused cached SAEs" if training.get("reused_cache") else f"trained in {training['train_seconds']:.0f}s"
        lines.append(f"{len(results['saes'])} SAEs, {training['samples_per_sae']:,} samples each, {how}")
    if family["kind"] == "toy-mixing":
        lines += ["", "feature mixing (mean cos of latents j != 0 with feature 0) by rho and k:", mixing_table(results)]
        return "\n".join(lines)
    gt = results["ground_truth"]
    lines += [f"true L0 = {gt['true_l0']:.4f} (measured on the evaluation set: {gt['true_l0_measured']:.3f})", "",
              l0_table(results), "", "L0 chosen by each selector:", selector_table(results)]
    return "\n".join(lines)
