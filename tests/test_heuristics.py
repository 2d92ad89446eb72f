"""Selectors pick what their rule says on hand-made metric tables, and are scored against a ground truth."""

import numpy as np
import pandas as pd
import pytest

from l0eval.selection.selectors import (
    SND_WIDTH_FRACTIONS,
    argmin_of,
    closest_to,
    default_selectors,
    kneedle_knee,
    max_curvature_knee,
    metric_row,
    reconstruction_budget,
    score_selectors,
    snd_column,
    snd_n_values,
    snd_self_consistent,
    snd_width_aggregate,
    width_fraction_n,
)


def table():
    l0 = np.arange(1, 21, dtype=float)
    return pd.DataFrame({
        "l0": l0,
        "s_n_dec@12": np.abs(l0 - 11) + 0.1,
        "s_n_dec@13": np.abs(l0 - 11) + 0.2,
        "s_n_dec@14": np.abs(l0 - 12) + 0.2,
        "c_dec": np.abs(l0 - 10) * 0.01,
        "c_enc": np.abs(l0 - 11) * 0.01,
        # saturating reconstruction: rises fast, flat after 8
        "variance_explained": np.minimum(l0 / 8.0, 1.0) ** 0.5,
        "feature_recovery": 1 - np.abs(l0 - 11) / 20,
    })


def test_argmin_and_canonical():
    assert argmin_of("c_dec")(table()) == 10.0
    assert closest_to(100)(table()) == 20.0
    assert closest_to(4.5)(table()) == 4.0  # ties go to the lower L0


def test_argmin_skips_missing_values():
    t = table()
    t.loc[t.l0 == 10, "c_dec"] = np.nan
    assert argmin_of("c_dec")(t) in (9.0, 11.0)


def test_kneedle_finds_the_saturation_point():
    assert kneedle_knee("variance_explained")(table()) == pytest.approx(8.0, abs=1)
    assert kneedle_knee("variance_explained")(table().head(2)) is None


def test_scores_against_ground_truth_with_replicates():
    t = table()
    selectors = default_selectors([12, 13, 14])
    scores = score_selectors(selectors, t, 10.9525, "feature_recovery", replicate_tables=[t, t])
    assert scores["argmin_s_n_dec@12"]["chosen_l0"] == 11.0
    assert scores["argmin_s_n_dec@12"]["error"] == pytest.approx(0.0475)
    assert scores["argmin_s_n_dec@12"]["within_one"] is True
    assert scores["argmin_s_n_dec@12"]["feature_recovery"] == pytest.approx(1.0)
    assert scores["argmin_s_n_dec@12"]["replicates_within_one"] == "2/2"
    assert scores["argmin_s_n_dec@14"]["chosen_l0"] == 12.0
    assert scores["canonical_100"]["within_one"] is False
    assert set(scores) == {"argmin_s_n_dec@12", "argmin_s_n_dec@13", "argmin_s_n_dec@14", "argmin_c_dec",
                           "argmin_c_enc", "rd_knee_kneedle", "rd_knee_max_curvature", "rd_budget_90",
                           "s_n_dec_self_consistent", "s_n_dec_self_consistent_interior", "canonical_100",
                           "argmin_c_dec_alive", "baseline_smallest_l0", "baseline_largest_l0", "baseline_grid_middle"}
    grid = sorted(t["l0"])
    assert scores["baseline_smallest_l0"]["chosen_l0"] == grid[0]
    assert scores["baseline_largest_l0"]["chosen_l0"] == grid[-1]
    assert scores["baseline_grid_middle"]["chosen_l0"] == grid[(len(grid) - 1) // 2]
    assert scores["baseline_grid_middle"]["label"] == "baseline" and scores["argmin_c_dec"]["label"] == "proxy"
    with_width = score_selectors(default_selectors([12], width=50), t, 10.9525)
    assert {"argmin_s_n_dec@paper_ratio", "s_n_dec_width_aggregate"} <= set(with_width)


def snd_family(true_l0=11, l0s=range(1, 26), width=50):
    """s_n^dec as the paper's toy shows it: for n just above the true L0 the curve dips at the true L0;
    for n below the true L0 it falls towards the largest L0 (the argmin drifts away)."""
    l0 = np.array(list(l0s), dtype=float)
    columns = {}
    for n in range(1, width):
        dip = np.abs(l0 - true_l0) / 10 + 0.01 * n
        columns[f"s_n_dec@{n}"] = dip if n > true_l0 else 1.0 - l0 / 100 + 0.01 * n
    return pd.DataFrame({"l0": l0, **columns})


def test_self_consistent_snd_needs_no_hand_set_n():
    for true_l0 in (4, 11, 20):
        assert snd_self_consistent(snd_family(true_l0)) == true_l0
    # uneven L0 grid: n = floor(k) + 1 for each candidate
    assert snd_self_consistent(snd_family(16, l0s=[2, 4, 8, 16, 32], width=40)) == 16
    # a curve that falls towards the smallest L0 for n below the truth makes that L0 a (boundary) fixed point
    falling = snd_family(11)
    for n in range(1, 12):
        falling[f"s_n_dec@{n}"] = falling["l0"] / 100 + 0.01 * n
    assert snd_self_consistent(falling) == 1.0
    assert snd_self_consistent(falling, interior=True) == 11.0
    # no column for any candidate's n: no choice
    assert snd_self_consistent(pd.DataFrame({"l0": [1.0, 2.0], "c_dec": [0.1, 0.2]})) is None


def test_snd_n_values_cover_every_rule():
    needed = snd_n_values([2, 4, 8, 16, 32], width=40, snd_n=[12])
    assert {3, 5, 9, 17, 33, 12, width_fraction_n(40, 12000 / 32768)} <= set(needed)
    assert {width_fraction_n(40, f) for f in SND_WIDTH_FRACTIONS} <= set(needed)
    assert max(needed) < 40


def rate_distortion(l0, elbow=8.0):
    """FVU falling as a power law until the elbow, then flat (on log-log axes: a straight line, then a bend)."""
    return np.where(l0 < elbow, (l0 / elbow) ** -1.5 * 0.02, 0.02 * (1 - 0.01 * (l0 - elbow) / l0))


def test_max_curvature_knee_finds_the_log_log_elbow():
    l0 = np.array([1, 2, 3, 4, 6, 8, 11, 16, 22, 32], dtype=float)
    assert max_curvature_knee(pd.DataFrame({"l0": l0, "fvu": rate_distortion(l0)})) == 8.0
    # a straight power law has no elbow
    assert max_curvature_knee(pd.DataFrame({"l0": l0, "fvu": l0**-1.0})) is None


def test_reconstruction_budget_is_the_smallest_l0_reaching_the_gain():
    t = pd.DataFrame({"l0": [1.0, 2, 4, 8, 16], "fvu": [1.0, 0.5, 0.2, 0.08, 0.0]})
    assert reconstruction_budget(0.9)(t) == 8.0  # FVU 0.08 <= 1 - 0.9 * 1
    assert reconstruction_budget(0.5)(t) == 2.0
    # without FVU, 1 - variance explained; a worse larger L0 does not count (Pareto frontier)
    t = pd.DataFrame({"l0": [1.0, 2, 4, 8], "variance_explained": [0.0, 0.95, 0.5, 0.96]})
    assert reconstruction_budget(0.9)(t) == 2.0


def test_width_aggregate_averages_normalised_curves():
    # n = 5, 10, 25, 50 of width 100: all above a true L0 of 4, the argmin of every curve is 4
    assert snd_width_aggregate(100)(snd_family(4, l0s=range(1, 15), width=100)) == 4.0
    # three of the four n below a true L0 of 30: their curves fall towards the largest L0 and win
    assert snd_width_aggregate(100)(snd_family(30, l0s=range(20, 41), width=100)) == 40.0


def test_sweep_axis_is_the_nominal_l0_not_the_measured_one():
    """Threshold SAEs measure an L0 near, not at, their k; seed replicates measure different ones. The sweep
    axis must stay the nominal L0 so replicates share a row and selectors answer in the family's L0s."""
    entries = [{"id": f"k{k}_s{seed}", "nominal_l0": k, "measured_l0": k * (1.02 + 0.01 * seed),
                "metrics": {"l0": k * (1.02 + 0.01 * seed), "c_dec": abs(k - 16) + seed, "s_n_dec": {"20": 1.0 / k}}}
               for k in (8.0, 16.0, 32.0) for seed in (0, 1)]
    rows = [metric_row(e["nominal_l0"], e["metrics"], seed=i % 2) for i, e in enumerate(entries)]
    table = pd.DataFrame(rows).drop(columns="seed").groupby("l0", as_index=False).mean()
    assert table["l0"].tolist() == [8.0, 16.0, 32.0]
    assert table["measured_l0"].tolist() == pytest.approx([8 * 1.025, 16 * 1.025, 32 * 1.025])
    assert argmin_of("c_dec")(table) == 16.0
    assert argmin_of(snd_column(20.0))(table) == 32.0


def test_printed_table_shows_nominal_and_measured_l0_apart():
    from l0eval.publish.console import l0_table

    results = {"family": {"selectors": {"snd_n": [20]}},
               "by_l0": [metric_row(k, {"l0": k * 1.1, "variance_explained": 0.9, "s_n_dec": {"20": 1.0}})
                         for k in (8.0, 16.0)]}
    lines = l0_table(results).splitlines()
    assert "L0 measured" in lines[0]
    assert lines[1].split()[:3] == ["8", "0.900", "8.800"] and lines[2].split()[:3] == ["16", "0.900", "17.600"]


def test_selectors_read_columns_that_are_not_all_numbers_as_missing_values():
    """A table read from a file may hold a metric as text or None in some rows: those rows are skipped, not
    compared as strings (the same picks as on the numeric table with NaN there)."""
    numeric = pd.DataFrame({"l0": [2.0, 4.0, 8.0, 16.0], "c_dec": [0.3, np.nan, 0.1, 0.2],
                            "fvu": [0.5, 0.2, 0.05, 0.04], "variance_explained": [0.5, 0.8, 0.95, 0.96]})
    mixed = numeric.astype(object)
    mixed.loc[1, "c_dec"] = "not measured"
    mixed.loc[3, "fvu"] = None  # FVU missing somewhere: the rate-distortion rules use 1 - VE instead
    as_if_numeric = numeric.assign(fvu=1.0 - numeric["variance_explained"])
    assert argmin_of("c_dec")(mixed) == argmin_of("c_dec")(numeric) == 8.0
    for pick in (max_curvature_knee, reconstruction_budget(0.9)):
        assert pick(mixed) == pick(as_if_numeric)
