"""The committed results are what the current code makes of them, and the README quotes them correctly.

These read results/*.json as committed (regenerate them with the commands in each test's docstring):
every selector choice and every tally is recomputed from ``by_l0`` with the current code, ``by_l0`` from the
members, the members' point metrics from their stored per-batch statistics, and each number the README's
prose quotes is checked against the file it comes from. A code change that moves a choice fails here until
the results (and the README) are regenerated.
"""

import json
import re
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from l0eval.publish.leaderboard import collect
from l0eval.selection.bootstrap import has_batch_statistics, member_table, pooled_member_values
from l0eval.selection.selectors import snd_column
from l0eval.selection.verdict import (
    HAND_N,
    is_known_truth,
    metric_table,
    selector_tally,
    summary_line,
    verdict_selectors,
)

ROOT = Path(__file__).parent.parent
RESULTS = ROOT / "results"
README = (ROOT / "README.md").read_text()
SWEEPS = sorted(path.name for path in RESULTS.glob("sweep-*.json"))
SWEEP_FAMILIES = ["toy.json", *SWEEPS, "smollm2-l0.json"]


def load(name):
    path = RESULTS / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run the command in its docstring and commit the output")
    return json.loads(path.read_text())


def prose(text: str) -> str:
    """README text with line breaks and emphasis removed, so a quoted phrase may wrap."""
    return re.sub(r"\s+", " ", text.replace("**", ""))


@pytest.mark.parametrize("name", SWEEP_FAMILIES)
def test_every_stored_selector_choice_is_what_the_current_code_picks(name):
    results = load(name)
    table = metric_table(results)
    hand_n = (results["family"].get("selectors", {}).get("snd_n") or [None])[0]
    stored = results["selectors"]
    recomputed = 0
    for selector in verdict_selectors(results):
        key = f"argmin_s_n_dec@{snd_column(hand_n).split('@')[1]}" if selector.name == HAND_N else selector.name
        if key in stored:  # files from before a selector existed do not store its choice
            assert selector.pick(table) == stored[key]["chosen_l0"], (name, key)
            recomputed += 1
    assert recomputed >= 8, f"{name}: too few stored choices to compare"


@pytest.mark.parametrize("name", SWEEP_FAMILIES)
def test_by_l0_is_the_mean_of_the_members(name):
    results = load(name)
    members = member_table(results["saes"]).drop(columns="seed").groupby("l0", as_index=False).mean()
    table = metric_table(results)
    for column in ("variance_explained", "fvu", "c_dec", "c_enc"):
        assert np.allclose(table[column], members[column], rtol=1e-12), (name, column)


def awaiting_regeneration() -> str:
    return prose(README.split("**Awaiting regeneration**", 1)[1].split("\n\n", 1)[0])


@pytest.mark.parametrize("name", SWEEP_FAMILIES)
def test_point_metrics_pool_the_stored_evaluation_batches(name):
    """The bootstrap's all-ones draw is the point estimate; a file from before the per-batch statistics
    (issue 15) must be named in README's "Awaiting regeneration" paragraph."""
    results = load(name)
    if not has_batch_statistics(results["saes"]):
        assert f"`results/{name}`" in awaiting_regeneration(), f"{name} has no per-batch statistics: regenerate it"
        return
    for entry in results["saes"]:
        pooled = pooled_member_values(entry, np.ones((1, len(entry["batches"]["rows"]))))
        for metric in ("mse", "variance_explained", "fvu"):
            assert pooled[metric][0] == pytest.approx(entry["metrics"][metric], rel=1e-9), (name, entry["id"])


@pytest.fixture(scope="module")
def verdicts():
    return collect(RESULTS)[0]


def test_every_choice_lies_inside_its_own_interval(verdicts):
    for verdict in verdicts:
        for row in verdict["rows"]:
            if row["chosen_l0"] is not None and row.get("interval_90"):
                low, high = row["interval_90"]
                assert low <= row["chosen_l0"] <= high, (verdict["family"], row["selector"])


def test_readme_quotes_the_headlines_the_code_draws_from_the_results(verdicts):
    """`l0eval leaderboard` (README "Verdict so far")"""
    for toy in (True, False):
        line = summary_line(verdicts, toy)
        assert line is not None and prose(line) in prose(README), line


def test_readme_tally_sentence_matches_the_recomputed_tally(verdicts):
    """Every "`NAME` a/b" of the verdict paragraph's toy and LLM tallies is that selector's hits over judged,
    and every selector and baseline of the tally is quoted (none left out)."""
    section = prose(README.split("**Verdict so far**", 1)[1].split("### ", 1)[0])
    for toy, kind in ((True, "Known-truth tally"), (False, "LLM tally")):
        assert kind in section, f"the verdict paragraph has no {kind}"
        sentence = section.split(kind, 1)[1].split(". ", 1)[0]
        quoted = re.findall(r"`([\w@.]+)` ([\d.]+)/(\d+)", sentence)
        tally = selector_tally(verdicts, toy)
        assert {name for name, _, _ in quoted} == set(tally), kind
        for name, hits, judged in quoted:
            assert float(hits) == pytest.approx(tally[name]["hits"], abs=0.005), name
            assert int(judged) == tally[name]["judged"], name


def test_readme_seed_spread_of_the_main_toy_is_the_committed_one():
    results = load("toy.json")
    for name in ("argmin_c_enc", "argmin_c_dec", "argmin_s_n_dec@12"):
        picks = ", ".join(f"{p:g}" for p in results["selectors"][name]["replicate_choices"])
        assert f"`{name}` picks {picks}" in prose(README), (name, picks)


def test_main_toy_trained_saes_out_reconstruct_the_true_features_below_the_true_l0():
    """`l0eval run --family toy`"""
    results = load("toy.json")
    assert results["ground_truth"]["true_l0"] == pytest.approx(10.9525)
    assert len(results["run"]["seeds"]["training_replicates"]) >= 2
    ground_truth = {row["l0"]: row["variance_explained"] for row in results["reference"]["ground_truth_sae"]}
    for row in results["by_l0"]:
        if row["l0"] < 11:
            assert row["variance_explained"] > ground_truth[row["l0"]], row["l0"]
    forced = {row["l0"]: row for row in results["reference"]["true_l0_sae_at_lower_l0"]}
    assert forced[5.0]["trained_at_l0_mse"] < forced[5.0]["true_l0_sae_mse"]
    text = prose(README)
    assert (f"the SAE trained at k = 5 has MSE {forced[5.0]['trained_at_l0_mse']:.2f}; the k = 11 SAE run at "
            f"k = 5 has {forced[5.0]['true_l0_sae_mse']:.2f}") in text
    by_l0 = {row["l0"]: row for row in results["by_l0"]}
    assert f"(VE {by_l0[10.0]['variance_explained']:.3f} vs {ground_truth[10.0]:.3f})".replace("0.", ".") in text


def test_small_toy_mixing_sign_follows_rho():
    """`l0eval run --family toy-small`"""
    grid = {(row["rho"], row["l0"]): row for row in load("toy-small.json")["mixing_grid"]}
    assert grid[(0.4, 1.8)]["mean"] == pytest.approx(0.27, abs=0.05)
    assert grid[(-0.4, 1.8)]["mean"] == pytest.approx(-0.25, abs=0.05)
    assert grid[(0.0, 1.8)]["mean"] == pytest.approx(0.0, abs=0.05)
    for rho in (-0.4, -0.2, 0.2, 0.4):
        assert grid[(rho, 2.0)]["mean"] == pytest.approx(0.0, abs=0.05)
        for k in (1.7, 1.8):
            assert (grid[(rho, k)]["mean"] > 0) == (rho > 0)
    text = prose(README)
    for rho, sign in ((0.4, "+"), (-0.4, "−")):  # README: "+0.275 ± 0.002 at rho = +0.4"
        cell = grid[(rho, 1.8)]
        assert f"{sign}{abs(cell['mean']):.3f} ± {cell['std']:.3f} at rho = {sign}0.4" in text, rho


def test_batched_trainer_benchmark_reports_its_ratios_from_its_rounds():
    """`python scripts/bench_trainer.py`: medians over rounds of per-round ratios, a profile by section"""
    bench = load("bench/trainer.json")
    assert bench["family"]["members"] == 50 and bench["machine_note"] and bench["load_average_before"]
    rounds = bench["rounds"]
    for entry in rounds:
        assert entry["ratio_to_sae_lens"] == pytest.approx(entry["sae_lens_ms_per_sae_step"]
                                                           / entry["ours_ms_per_sae_step"])
        gflops = bench["protocol"]["flops_per_sae_step"] / entry["ours_ms_per_sae_step"] / 1e6
        assert entry["ratio_to_stacked_bmm_ceiling"] == pytest.approx(
            gflops / max(entry["stacked_bmm_encoder"], entry["stacked_bmm_decoder"]))
    for key in ("ratio_to_sae_lens", "ratio_to_stacked_bmm_ceiling", "ours_ms_per_sae_step"):
        assert bench["median"][key] == pytest.approx(statistics.median(entry[key] for entry in rounds))
    assert bench["median"]["ratio_to_sae_lens"] > 1
    profile = bench["profile"]
    assert profile["members_with_dead_latents"] > 0 and profile["sections_ms_per_step"]["aux_loss"] > 0
    assert f"**{bench['median']['ratio_to_sae_lens']:.1f}x**" in README  # quoted as measured
    assert f"**{bench['median']['ratio_to_stacked_bmm_ceiling']:.0%}**" in README


def test_cpu_memory_benchmark_quotes_its_own_runs():
    """`python scripts/bench_cpu_memory.py`: fresh processes with and without keep_freed_memory, same weights"""
    bench = load("bench/cpu_memory.json")
    off = [r for r in bench["runs"] if not r["keep_freed_memory"]]
    on = [r for r in bench["runs"] if r["keep_freed_memory"] and r["applied"]]
    assert len(off) == len(on) == 2 and bench["identical_weights"]
    assert len({r["weights_sha256"] for r in bench["runs"]}) == 1
    speedup = min(r["ms_per_step"] for r in off) / min(r["ms_per_step"] for r in on)
    assert bench["speedup"] == pytest.approx(speedup)
    assert f"**{speedup:.2f}x**" in README
    for run in off + on:
        assert f"{run['ms_per_step']:.1f}" in README


def test_smollm2_family_has_downstream_ground_truth_for_every_sae():
    """`python -m l0eval.cli run --family smollm2-l0 --out results` (after `l0eval train`, scripts/smollm2_family.py)"""
    results = load("smollm2-l0.json")
    for entry in results["saes"]:
        metrics = entry["metrics"]
        for name in ("sparse_probing_k1", "sparse_probing_k16", "absorption_fraction", "full_absorption"):
            assert metrics[name] is not None and 0 <= metrics[name] <= 1, (entry["id"], name)
        assert set(entry["downstream"]["sparse_probing"]) == set(results["run"]["downstream"]["sparse_probing"]
                                                                  ["datasets"])
    assert "100_news_fake" in results["run"]["downstream"]["sparse_probing"]["excluded_datasets"]
    assert "100_news_fake" not in results["run"]["downstream"]["sparse_probing"]["datasets"]
    baseline = results["downstream_baselines"]["residual_top_k"]
    assert 0.5 < baseline["sparse_probing_k16"] <= 1
    assert results["run"]["wall_seconds"] > 0 and results["run"]["seeds"]["downstream"] == 42
    # BOS left out (its variance share: test below); the sweep axis is the nominal L0, measured beside it
    assert results["run"]["evaluation"]["positions"] == "every position but BOS"
    # the grid rule round(2^(i/2)), i = 6..16 (docs/selectors.md#grids); held-out tokens; past the dead window
    assert [row["l0"] for row in results["by_l0"]] == [round(2 ** (i / 2)) for i in range(6, 17)]
    assert "held out from training" in results["run"]["evaluation"]["sequences"]
    for member in results["family"]["members"]:
        training = member["training"]
        assert training["heldout_sequences"] == 1024 and training["exclude_bos"] is True, member["id"]
        steps = training["samples"] // training["batch_size"]
        assert training["dead_feature_window"] <= steps // 4, member["id"]
    for row in results["by_l0"]:
        assert row["measured_l0"] == pytest.approx(row["l0"], rel=0.03) and row["ce_loss_score"] > 0.5


def test_smollm2_absorption_is_flagged_below_saebench_recommended_width(verdicts):
    verdict = next(v for v in verdicts if v["family"] == "smollm2-l0")
    caveats = {t.name: t.caveat for t in verdict["targets"]}
    assert "width 2048 < 16384" in caveats["absorption_fraction"] and caveats["sparse_probing_k16"] is None


def test_bos_carries_most_of_the_smollm2_variance():
    """`python scripts/bench_bos_share.py` (why smollm2-l0 sets exclude_bos)"""
    share = load("bench/bos_share.json")
    assert share["bos_share_of_centred_variance"] > 0.9 and share["norm_ratio"] > 100
    assert share["bos_rows"] * (share["context"] - 1) == share["other_rows"]


def test_killed_real_run_resumes_without_recomputing_and_gives_identical_results():
    """`python scripts/demo_resume.py` (SmolLM2-135M, the smollm2-l0 family's SAEs)"""
    demo = load("bench/demo_resume.json")
    assert 0 < demo["shards_finished_when_killed"] < demo["shards_total"]
    assert demo["finished_shards_rewritten_on_resume"] == 0
    assert demo["shards_computed_on_resume"] == demo["shards_total"] - demo["shards_finished_when_killed"]
    assert demo["shards_byte_identical_to_uninterrupted_run"] and demo["metrics_identical_to_uninterrupted_run"]
    assert demo["selectors_identical_to_uninterrupted_run"]


def test_toy_sweep_is_on_one_fixed_grid_with_oracle_n_labelled(verdicts):
    """`python scripts/toy_sweep.py` (the grid rule: docs/selectors.md#grids). The family files are on the
    grid; a results file still on its old grid must be named in README's "Awaiting regeneration"."""
    from l0eval.family.toy_spec import toy_spec_by_name

    grid = sorted({round(2 ** (i / 2)) for i in range(11)})
    sweep = [load(name) for name in SWEEPS]
    assert len(sweep) >= 4
    assert any(r["family"]["sae"]["d_sae"] > r["family"]["toy"]["n_features"] for r in sweep)
    assert any(r["ground_truth"]["true_l0"] > 20 for r in sweep)
    for name, results in zip(SWEEPS, sweep):
        spec = toy_spec_by_name(results["family"]["name"])
        assert list(spec.sae.k_values) == [k for k in grid if k < spec.sae.d_sae], name
        if [row["l0"] for row in results["by_l0"]] != list(spec.sae.k_values):
            assert f"`results/{name}`" in awaiting_regeneration(), f"{name} is not on the family's grid"
    for verdict in verdicts:
        if verdict["kind"] == "toy" and verdict["hand_n"] is not None:
            assert verdict["labels"]["argmin_s_n_dec@hand_n"] == "oracle", verdict["family"]


def test_committed_leaderboard_is_what_the_code_makes_from_the_committed_results(tmp_path):
    """`l0eval leaderboard`"""
    from l0eval.publish.leaderboard import write_leaderboard

    committed = ROOT / "leaderboard"
    write_leaderboard(RESULTS, tmp_path)
    for name in ("README.md", "leaderboard.csv", "index.html"):
        assert (tmp_path / name).read_text() == (committed / name).read_text(), name
    plots = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert plots == sorted(p.name for p in (committed / "plots").iterdir())  # PNG bytes vary with the font stack


def test_leaderboard_csv_tally_agrees_with_the_verdict(verdicts):
    """Each selector's hits recomputed from the committed CSV rows equal the verdict's tally."""
    rows = pd.read_csv(ROOT / "leaderboard" / "leaderboard.csv")
    toy_rows = rows[rows["target"].map(is_known_truth) & (rows["censored"] == "no")]
    tally = selector_tally(verdicts, toy=True)
    for name, group in toy_rows.groupby("selector"):
        hits = group["within_one"].map(lambda v: {"yes": 1.0, "no": 0.0, "-": 0.0}.get(v, v))  # -: no pick
        hits = hits.astype(float).sum()
        assert hits == pytest.approx(tally[name]["hits"], abs=1e-3) and len(group) == tally[name]["judged"], name


SYNTHETIC_WORLDS = ("synthsaebench-1k", "synthsaebench-1k-p0.5", "synthsaebench-1k-deep")


def test_synthetic_worlds_have_every_target_and_the_reported_findings():
    """`l0eval run --family NAME` for each CPU world (README, SynthSAEBench worlds)."""
    results = {name: load(f"{name}.json") for name in SYNTHETIC_WORLDS}
    truth = {name: r["ground_truth"] for name, r in results.items()}
    assert truth["synthsaebench-1k-p0.5"]["true_l0"] < 0.6 * truth["synthsaebench-1k"]["true_l0"]
    for name, result in results.items():
        targets = {t["name"]: t["l0"] for t in truth[name]["targets"]}
        assert set(targets) == {"true_l0", "true_l0_top_width", "best_f1", "best_mcc"}
        assert targets["true_l0_top_width"] < targets["true_l0"]
        assert truth[name]["targets_agree"] is True
        assert all({"mcc", "f1", "uniqueness", "dead_latents"} <= set(e["metrics"]) for e in result["saes"])
        # s_n^dec at the paper's n/width picks far above every target on these worlds
        assert result["selectors"]["argmin_s_n_dec@paper_ratio"]["chosen_l0"] >= 4 * targets["true_l0"]
