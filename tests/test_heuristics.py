"""Selectors pick what their rule says on hand-made metric tables, and are scored against a ground truth."""

import numpy as np
import pandas as pd
import pytest

from l0eval.heuristics import argmin_of, closest_to, default_selectors, kneedle_knee, score_selectors


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
                           "argmin_c_enc", "rd_knee_kneedle", "canonical_100"}
