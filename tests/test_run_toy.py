"""`l0eval run` end to end on small toy families: results contract, cache reuse, resume, mixing."""

import json
import math

import pytest
import yaml

from l0eval.cli import main
from l0eval.results import SCHEMA_VERSION, read_results


def tiny_family(tmp_path, **changes):
    family = {
        "name": "tiny-sweep", "kind": "toy",
        "toy": {"n_features": 8, "d_model": 16, "probabilities": {"linear": {"high": 0.5, "low": 0.2}},
                "correlation": {"random": {"seed": 1}}, "embedding": {"steps": 200}},
        "sae": {"d_sae": 8, "k": {"range": [1, 5]}},
        "training": {"samples": 60_000, "batch_size": 256, "lr": 3.0e-3, "seeds": [0, 1]},
        "evaluation": {"samples": 5_000},
        "selectors": {"snd_n": [3, 4]},
    }
    family.update(changes)
    path = tmp_path / f"{family['name']}.yaml"
    path.write_text(yaml.safe_dump(family))
    return path


def assert_no_nan(value):
    if isinstance(value, dict):
        for item in value.values():
            assert_no_nan(item)
    elif isinstance(value, list):
        for item in value:
            assert_no_nan(item)
    elif isinstance(value, float):
        assert math.isfinite(value)


@pytest.mark.slow  # trains and evaluates toy families end to end
def test_run_writes_the_results_contract_and_reuses_the_cache(tmp_path, capsys, device):
    family = tiny_family(tmp_path)
    out = tmp_path / "results"
    assert main(["run", "--family", str(family), "--out", str(out), "--quiet", "--device", device]) == 0
    printed = capsys.readouterr().out
    assert "L0 chosen by each selector" in printed and "argmin_s_n_dec@3" in printed
    results = read_results(out / "tiny-sweep.json")
    assert_no_nan(results)
    assert results["schema_version"] == SCHEMA_VERSION
    assert results["family"]["toy"]["n_features"] == 8
    assert results["run"]["seeds"]["training_replicates"] == [0, 1]
    assert results["run"]["library_versions"]["sae-lens"]
    assert results["ground_truth"]["true_l0"] == pytest.approx(sum(0.2 + 0.3 * i / 7 for i in range(8)))
    assert len(results["saes"]) == 10
    member = results["saes"][0]
    assert {"id", "nominal_l0", "measured_l0", "trained_here", "metrics"} <= set(member)
    assert {"mse", "variance_explained", "fvu", "l0", "dead_fraction", "c_dec", "c_enc", "s_n_dec",
            "feature_recovery"} <= set(member["metrics"])
    assert member["measured_l0"] == pytest.approx(member["nominal_l0"], abs=0.01)  # BatchTopK over the batch
    assert set(results["run"]["metric_versions"]) >= {"s_n_dec", "c_dec", "reconstruction"}
    selectors = results["selectors"]
    assert {"argmin_s_n_dec@3", "argmin_c_dec", "rd_knee_kneedle", "canonical_100"} <= set(selectors)
    for entry in selectors.values():
        assert entry["chosen_l0"] is None or entry["chosen_l0"] in {1.0, 2.0, 3.0, 4.0, 5.0}
        assert set(entry["bootstrap"]["plausible_l0s"]) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert {"s_n_dec_self_consistent", "rd_knee_max_curvature", "rd_budget_90", "argmin_s_n_dec@paper_ratio",
            "s_n_dec_width_aggregate"} <= set(selectors)
    # s_n^dec measured at n just above every L0 (the self-consistent rule), up to width - 1
    assert {"5", "6"} <= set(member["metrics"]["s_n_dec"])
    bootstrap = results["run"]["evaluation"]["bootstrap"]
    assert bootstrap["seed"] == 0 and bootstrap["evaluation_batches"] == 10 and bootstrap["seed_replicates"] == 2
    assert len(member["batches"]["rows"]) == 10 and sum(member["batches"]["rows"]) == 5_000
    # the point estimate pools the bootstrap's batches
    assert sum(member["batches"]["squared_error"]) / 5_000 == pytest.approx(member["metrics"]["mse"], rel=1e-12)
    assert results["run"]["training"]["reused_cache"] is False

    assert main(["run", "--family", str(family), "--out", str(out), "--quiet", "--device", device]) == 0
    again = read_results(out / "tiny-sweep.json")
    assert again["run"]["training"]["reused_cache"] is True
    assert [s["metrics"] for s in again["saes"]] == [s["metrics"] for s in results["saes"]]


@pytest.mark.slow  # trains and evaluates toy families end to end
def test_interrupted_training_resumes_and_matches_a_clean_run(tmp_path, monkeypatch):
    from l0eval.train import batched

    family = tiny_family(tmp_path, training={"samples": 40_000, "batch_size": 256, "lr": 3.0e-3, "seeds": [0]})
    clean_out, resumed_out = tmp_path / "clean", tmp_path / "resumed"
    monkeypatch.setenv("L0EVAL_CACHE", str(tmp_path / "cache-clean"))
    assert main(["run", "--family", str(family), "--out", str(clean_out), "--quiet"]) == 0

    monkeypatch.setenv("L0EVAL_CACHE", str(tmp_path / "cache-resumed"))
    original_step = batched.FamilyTrainer.train_step

    def dying_step(self, batch):
        if self.step == 70:
            raise KeyboardInterrupt
        self.checkpoint_seconds = 0  # checkpoint every step so the kill loses nothing
        return original_step(self, batch)

    monkeypatch.setattr(batched.FamilyTrainer, "train_step", dying_step)
    assert main(["run", "--family", str(family), "--out", str(resumed_out), "--quiet"]) == 130
    assert not (resumed_out / "tiny-sweep.json").exists()
    monkeypatch.setattr(batched.FamilyTrainer, "train_step", original_step)
    assert main(["run", "--family", str(family), "--out", str(resumed_out), "--quiet"]) == 0
    clean = read_results(clean_out / "tiny-sweep.json")
    resumed = read_results(resumed_out / "tiny-sweep.json")
    assert resumed["run"]["training"]["resumed_from_step"] == 70
    for a, b in zip(clean["saes"], resumed["saes"]):
        assert a["metrics"]["mse"] == pytest.approx(b["metrics"]["mse"], rel=1e-5, abs=1e-7)


def test_mixing_family_runs_and_reports_a_grid(tmp_path):
    family = {
        "name": "tiny-mixing", "kind": "toy-mixing",
        "toy": {"n_features": 4, "d_model": 8, "probabilities": {"constant": 0.4},
                "correlation": {"star": {"rho": 0.0}}, "embedding": {"steps": 200}},
        "sae": {"d_sae": 4, "k": [1.4, 1.6], "init": "ground_truth"},
        "mixing": {"rho": [-0.4, 0.4]},
        "training": {"samples": 20_000, "batch_size": 512},
        "evaluation": {"samples": 2_000},
        "selectors": {"snd_n": [1]},
    }
    path = tmp_path / "mix.yaml"
    path.write_text(yaml.safe_dump(family))
    assert main(["run", "--family", str(path), "--out", str(tmp_path), "--quiet"]) == 0
    results = json.loads((tmp_path / "tiny-mixing.json").read_text())
    assert len(results["saes"]) == 4
    assert {(row["rho"], row["l0"]) for row in results["mixing_grid"]} == {(-0.4, 1.4), (-0.4, 1.6), (0.4, 1.4),
                                                                            (0.4, 1.6)}
