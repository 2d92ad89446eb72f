"""`l0eval export --format saebench`: every committed family's results become SAEBench files that sae-bench's
own classes read back (``TypeAdapter(cls).validate_json``, as sae-bench's testing_utils validates its evals),
with l0eval's metrics under SAEBench's names where the meanings match, and nothing invented where they don't."""

import json
from pathlib import Path

import pytest
from pydantic import TypeAdapter
from sae_bench.sae_bench_utils.testing_utils import validate_eval_output_format_file

from l0eval.cli import main
from l0eval.family.catalog import resolve
from l0eval.family.sae_lens_ids import member_identity
from l0eval.publish.saebench_export import NOT_MEASURED, detail_from_row, export_saebench, output_classes
from l0eval.results import read_results
from l0eval.selection.bootstrap import BootstrapDesign
from l0eval.selection.verdict import judge_family

RESULTS = Path(__file__).resolve().parent.parent / "results"
FAST = BootstrapDesign(resamples=5, seed=0)


def committed_sweeps() -> list[str]:
    """Every committed family result with an L0 sweep: toy, smollm2-l0 and whichever others (SynthSAEBench-style
    worlds) are committed."""
    names = [path.stem for path in sorted(RESULTS.glob("*.json")) if read_results(path).get("by_l0")]
    assert {"toy", "smollm2-l0"} <= set(names)
    return names


def load_back(path: Path) -> dict:
    payload = json.loads(path.read_text())
    validate_eval_output_format_file(str(path), output_classes()[payload["eval_type_id"]])
    return payload


def by_type(written: list[Path]) -> dict[str, list[Path]]:
    grouped: dict[str, list[Path]] = {}
    for path in written:
        grouped.setdefault(path.parent.name, []).append(path)
    return grouped


@pytest.mark.parametrize("name", committed_sweeps())
def test_export_round_trips_through_sae_bench_classes(name, tmp_path):
    results = read_results(RESULTS / f"{name}.json")
    written = by_type(export_saebench(results, tmp_path, FAST))
    assert len(written["core"]) == len(results["saes"])
    metrics = {entry["id"]: entry["metrics"] for entry in results["saes"]}
    for path in written["core"]:
        core = load_back(path)
        ours = metrics[core["eval_result_unstructured"]["l0eval"]["member"]]
        quality = core["eval_result_metrics"]["reconstruction_quality"]
        # SAEBench's explained_variance is centred: l0eval's 1 - fvu, not its (uncentred) variance_explained
        assert quality["explained_variance"] == pytest.approx(1 - ours["fvu"])
        assert quality["mse"] == NOT_MEASURED  # SAEBench's mse divides by its batch's tokens: another number
        assert core["eval_result_metrics"]["sparsity"]["l0"] == pytest.approx(ours["l0"])
        assert core["eval_result_metrics"]["misc_metrics"]["frac_alive"] == pytest.approx(1 - ours["dead_fraction"])
        assert "reconstruction_quality.mse" in core["eval_result_unstructured"]["not_measured"]
        assert core["sae_lens_id"] == "custom_sae" and core["sae_lens_release_id"].startswith(f"{name}_")
    verdict = load_back(written["l0eval_l0_selection"][0])
    rows = judge_family(results, FAST)["rows"]
    assert [(d["selector"], d["target"], d["chosen_l0"]) for d in verdict["eval_result_details"]] == [
        (row["selector"], row["target"], row["chosen_l0"]) for row in rows]
    assert verdict["eval_result_metrics"]["grid"]["n_l0s"] == len(results["by_l0"])


def test_smollm2_downstream_metrics_land_under_saebench_names(tmp_path):
    results = read_results(RESULTS / "smollm2-l0.json")
    written = by_type(export_saebench(results, tmp_path, FAST))
    assert sorted(written) == ["absorption_first_letter", "core", "l0eval_l0_selection", "sparse_probing",
                               "sparse_probing_sae_probes"]
    entry = next(e for e in results["saes"] if e["id"] == "trained_k8")
    ours = entry["metrics"]
    stem = "smollm2-l0_trained_k8_custom_sae_eval_results.json"
    core = load_back(tmp_path / "core" / stem)["eval_result_metrics"]
    assert core["model_performance_preservation"] == pytest.approx({
        "ce_loss_score": ours["ce_loss_score"], "ce_loss_with_ablation": ours["ce_loss_zero_ablation"],
        "ce_loss_with_sae": ours["ce_loss_with_sae"], "ce_loss_without_sae": ours["ce_loss_clean"]})
    assert core["model_behavior_preservation"]["kl_div_with_ablation"] == pytest.approx(ours["kl_div_zero_ablation"])
    # SAEBench's explained_variance is the centred one, l0eval's 1 - fvu; l0eval's variance_explained is uncentred
    # (docs/saebench-export.md quotes both at L0 8)
    centred = core["reconstruction_quality"]["explained_variance"]
    assert centred == pytest.approx(1 - ours["fvu"]) and centred < ours["variance_explained"]
    mapping = (RESULTS.parent / "docs" / "saebench-export.md").read_text()
    quoted = f"smollm2-l0 at L0 8: {centred:.3f} here vs `variance_explained` {ours['variance_explained']:.3f}"
    assert quoted.replace(" 0.", " .") in mapping
    probing = load_back(tmp_path / "sparse_probing" / stem)
    baseline = results["downstream_baselines"]["saebench_residual_top_k"]
    assert probing["eval_result_metrics"]["sae"]["sae_top_1_test_accuracy"] == ours["saebench_probing_k1"]
    assert probing["eval_result_metrics"]["llm"]["llm_top_50_test_accuracy"] == baseline["saebench_probing_k50"]
    assert probing["eval_result_metrics"]["llm"]["llm_test_accuracy"] == NOT_MEASURED  # no full-width probe ran
    assert {d["dataset_name"] for d in probing["eval_result_details"]} == set(entry["downstream"]["saebench_probing"])
    sae_probes = load_back(tmp_path / "sparse_probing_sae_probes" / stem)
    assert sae_probes["eval_result_metrics"]["sae"]["sae_top_1_test_f1"] == ours["sparse_probing_k1"]
    assert sae_probes["sae_metrics_by_k"]["16"]["test_auc"] == ours["sparse_probing_k16_auc"]  # no SAEBench k=16
    absorption = load_back(tmp_path / "absorption_first_letter" / stem)
    mean = absorption["eval_result_metrics"]["mean"]
    assert mean["mean_absorption_fraction_score"] == ours["absorption_fraction"]
    assert mean["mean_full_absorption_score"] == ours["full_absorption"]
    stored = entry["downstream"]["absorption"]["saebench"]
    assert absorption["eval_id"] == stored["eval_id"] and absorption["eval_result_details"] == stored[
        "eval_result_details"]


def test_toy_has_no_downstream_evals_and_marks_ce_as_not_measured(tmp_path):
    written = by_type(export_saebench(read_results(RESULTS / "toy.json"), tmp_path, FAST))
    assert sorted(written) == ["core", "l0eval_l0_selection"]
    core = load_back(written["core"][0])
    assert core["eval_result_metrics"]["model_performance_preservation"]["ce_loss_score"] == NOT_MEASURED
    assert "model_performance_preservation.ce_loss_score" in core["eval_result_unstructured"]["not_measured"]
    assert core["sae_cfg_dict"]["model_name"] == "toy:toy"


def test_export_is_byte_identical_on_rerun(tmp_path):
    results = read_results(RESULTS / "smollm2-l0.json")
    first = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in export_saebench(results, tmp_path / "a", FAST)}
    second = {p.relative_to(tmp_path / "b"): p.read_bytes() for p in export_saebench(results, tmp_path / "b", FAST)}
    assert first == second


def test_a_broken_file_fails_sae_bench_validation(tmp_path):
    """The round trip can fail: a core file missing a required SAEBench field is refused."""
    path = export_saebench(read_results(RESULTS / "smollm2-l0.json"), tmp_path, FAST)[0]
    payload = json.loads(path.read_text())
    del payload["eval_result_metrics"]["sparsity"]["l0"]
    with pytest.raises(Exception, match="l0"):
        TypeAdapter(output_classes()["core"]).validate_json(json.dumps(payload))


def test_hub_members_get_their_sae_lens_and_neuronpedia_ids():
    member = resolve("gemma-scope-2b-l12-res-16k").members.saes[0]
    identity = member_identity(member.repo_id, member.path)
    assert identity.release == "gemma-scope-2b-pt-res" and identity.sae_id == member.id
    assert identity.neuronpedia_url.startswith("https://www.neuronpedia.org/gemma-2-2b/12-gemmascope-res-16k")
    assert member_identity(None, "/local/folder") is None


def test_cli_export_needs_exactly_one_source(tmp_path, capsys):
    assert main(["export", "--out", str(tmp_path)]) == 2
    assert main(["export", "--family", "nope", "--results", str(RESULTS), "--out", str(tmp_path)]) == 2
    assert "l0eval: error: no results file" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_verdict_rows_without_a_single_choice_fit_the_schema():
    """A chance-baseline row (an expected |steps| and a probability of landing within one step, no choice) and a
    censored target's row are valid details; the schema keeps a row's label."""
    chance = detail_from_row({"selector": "chance", "label": "baseline", "chosen_l0": None, "target": "true_l0",
                              "target_l0": 8.0, "censored": False, "error_steps": 2.25, "within_one": 0.375,
                              "regret": 0.1})
    assert chance.error_steps == 2.25 and chance.within_one == 0.375 and chance.label == "baseline"
    censored = detail_from_row({"selector": "argmin_c_dec", "chosen_l0": 4.0, "target": "true_l0", "target_l0": 4.0,
                                "censored": True, "error_steps": 0, "within_one": None, "interval_90": [4.0, 6.0],
                                "plausible_l0s": [4.0, 6.0]})
    assert censored.within_one is None and censored.interval_90_high == 6.0 and censored.error_steps == 0
