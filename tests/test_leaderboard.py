"""The verdict, `l0eval compare` and `l0eval leaderboard` on result files built here (toy-like with a true L0,
LLM-like with downstream targets, one with no target at all), and the HTML page in headless Chromium."""

import json

import numpy as np
import pytest

from l0eval.cli import main
from l0eval.publish.screenshots import WIDTHS, find_chromium, page_checks
from l0eval.results import write_json
from l0eval.selection.bootstrap import BootstrapDesign, bootstrap_selectors, summarise_choices
from l0eval.selection.selectors import argmin_of, metric_row
from l0eval.selection.verdict import HAND_N, judge_family, summary_line, verdict_selectors

FAST = BootstrapDesign(resamples=20, seed=0)


def member_metrics(l0, truth, width, rng, noise):
    """Metrics shaped as the paper's toy shows them: proxies dip at the truth, reconstruction saturates."""
    dip = abs(np.log(l0) - np.log(truth))
    snd = {str(n): (dip + 0.01 * n if n > truth else 1.0 - l0 / 100 + 0.01 * n) + noise * rng.normal()
           for n in range(1, width)}
    fvu = min(0.9, 0.02 * (truth / l0) ** 3) if l0 < truth else 0.02 * (1 - 0.001 * l0)
    return {"mse": fvu * 10, "variance_explained": 1 - fvu, "fvu": fvu, "l0": l0, "dead_fraction": 0.0,
            "c_dec": 0.01 + dip / 10 + noise * rng.normal(), "c_enc": 0.02 + dip / 10,
            "feature_recovery": 1 - dip / 3, "s_n_dec": snd}


def family_results(name, l0s, truth, kind="toy", seeds=(0, 1), batches=4, noise=0.0, extra=None, width=40):
    """A results payload with every part the verdict reads: family, run, ground_truth, saes (with per-batch
    values), by_l0. ``extra`` maps a metric name to a function of L0 (LLM downstream targets)."""
    rng = np.random.default_rng(1)
    saes = []
    for seed in seeds:
        for l0 in l0s:
            metrics = member_metrics(l0, truth, width, rng, noise)
            metrics.update({key: fn(l0) for key, fn in (extra or {}).items()})
            per_batch = [member_metrics(l0, truth, width, rng, noise) for _ in range(batches)]
            saes.append({"id": f"k{l0}_s{seed}", "nominal_l0": l0, "measured_l0": l0, "seed": seed,
                         "trained_here": True, "metrics": metrics,
                         "batches": {**{key: [b[key] for b in per_batch] for key in ("mse", "variance_explained",
                                                                                    "fvu")},
                                     "s_n_dec": {n: [b["s_n_dec"][n] for b in per_batch] for n in metrics["s_n_dec"]}}})
    rows = [metric_row(entry["nominal_l0"], entry["metrics"]) for entry in saes]
    by_l0 = [{key: float(np.mean([r[key] for r in rows if r["l0"] == l0])) for key in rows[0]} for l0 in l0s]
    family = {"name": name, "kind": kind, "description": f"{name} (built in a test)",
              "selectors": {"snd_n": [int(truth) + 1], "canonical_target": 100.0}}
    if kind == "toy":
        family["sae"] = {"d_sae": width}
        ground_truth = {"true_l0": truth, "score": "feature_recovery"}
    else:
        ground_truth = {"true_l0": None, "reason": "LLM family"}
    return {"schema_version": 1, "family": family, "run": {"evaluation": {"width": width}},
            "ground_truth": ground_truth, "saes": saes, "by_l0": by_l0, "selectors": {}}


def results_dir(tmp_path):
    directory = tmp_path / "results"
    write_json(directory / "toy-a.json", family_results("toy-a", [2, 4, 6, 8, 11, 16, 22], 8))
    write_json(directory / "toy-b.json", family_results("toy-b", [10, 15, 20, 25, 30, 40], 25, noise=0.002))
    write_json(directory / "llm-partial.json", family_results(
        "llm-partial", [10, 20, 40, 80, 160], 40, kind="saes", seeds=(None,),
        extra={"sparse_probing_k1": lambda l0: 0.8 - abs(np.log(l0 / 80)) / 10,
               "absorption_fraction": lambda l0: 0.1 + abs(np.log(l0 / 20)) / 10}))
    write_json(directory / "llm-bare.json", family_results("llm-bare", [10, 20, 40, 80], 40, kind="saes",
                                                           seeds=(None,)))
    write_json(directory / "toy-small.json", {"schema_version": 1, "family": {"name": "toy-small",
                                                                            "kind": "toy-mixing"},
                                              "mixing_grid": [], "selectors": {}})
    (directory / "bench").mkdir()
    (directory / "bench" / "trainer.json").write_text(json.dumps({"speedup": 2.0}))  # not a family
    return directory


def test_toy_verdict_scores_each_selector_against_the_true_l0():
    verdict = judge_family(family_results("toy-a", [2, 4, 6, 8, 11, 16, 22], 8), FAST)
    rows = {row["selector"]: row for row in verdict["rows"]}
    assert [t.name for t in verdict["targets"]] == ["true_l0"]
    assert rows["argmin_c_dec"]["chosen_l0"] == 8 and rows["argmin_c_dec"]["within_one"] is True
    assert rows["argmin_c_dec"]["regret"] == pytest.approx(0.0)
    assert rows[HAND_N]["chosen_l0"] == 8  # n = 9, just above the truth
    assert rows["s_n_dec_self_consistent"]["chosen_l0"] == 8
    canonical = rows["canonical_100"]
    assert canonical["chosen_l0"] == 22 and canonical["error_steps"] == 3 and canonical["within_one"] is False
    assert canonical["regret"] == pytest.approx(np.log(22 / 8) / 3)  # recovery 1 vs 1 - |log(22/8)| / 3


def test_llm_targets_are_read_from_metric_columns_with_their_direction():
    results = family_results("llm", [10, 20, 40, 80, 160], 40, kind="saes", seeds=(None,),
                             extra={"sparse_probing_k1": lambda l0: 0.8 - abs(np.log(l0 / 80)) / 10,
                                    "absorption_fraction": lambda l0: 0.1 + abs(np.log(l0 / 20)) / 10})
    verdict = judge_family(results, FAST)
    assert {(t.name, t.l0, t.higher_is_better) for t in verdict["targets"]} == {
        ("sparse_probing_k1", 80.0, True), ("absorption_fraction", 20.0, False)}
    rows = {(row["target"], row["selector"]): row for row in verdict["rows"]}
    probing = rows[("sparse_probing_k1", "argmin_c_dec")]  # c_dec dips at 40: one step below the probing peak
    assert probing["chosen_l0"] == 40 and probing["error_steps"] == -1
    assert probing["regret"] == pytest.approx(np.log(2) / 10)
    absorption = rows[("absorption_fraction", "argmin_c_dec")]
    assert absorption["error_steps"] == 1 and absorption["regret"] == pytest.approx(np.log(2) / 10)


def test_family_without_any_target_is_reported_not_scored(tmp_path, capsys):
    verdict = judge_family(family_results("bare", [10, 20, 40], 20, kind="saes", seeds=(None,)), FAST)
    assert verdict["targets"] == [] and verdict["no_target_reason"] == "LLM family"
    assert all(row["target"] is None and "regret" not in row for row in verdict["rows"])
    assert {row["selector"]: row["chosen_l0"] for row in verdict["rows"]}["argmin_c_dec"] == 20
    assert main(["compare", "--results", str(results_dir(tmp_path)), "--resamples", "5"]) == 0
    printed = capsys.readouterr().out
    assert "family llm-bare" in printed and "no ground truth: LLM family" in printed
    assert "not judged: toy-small.json" in printed and "bench_trainer" not in printed


def test_bootstrap_is_seeded_and_widens_with_noise():
    quiet = family_results("quiet", [4, 6, 8, 11, 16], 8, batches=6)
    noisy = family_results("noisy", [4, 6, 8, 11, 16], 8, batches=6, noise=0.3)
    selector = [sel for sel in verdict_selectors(quiet) if sel.name == "argmin_c_dec"]
    design = BootstrapDesign(resamples=50, seed=3)
    calm = bootstrap_selectors(selector, quiet["saes"], {"argmin_c_dec": 8.0}, design)["argmin_c_dec"]
    assert calm["plausible_l0s"] == [8.0] and calm["point_share"] == 1.0 and calm["interval_90"] == [8.0, 8.0]
    wide = bootstrap_selectors(selector, noisy["saes"], {"argmin_c_dec": 8.0}, design)["argmin_c_dec"]
    assert len(wide["plausible_l0s"]) > 1
    assert wide == bootstrap_selectors(selector, noisy["saes"], {"argmin_c_dec": 8.0}, design)["argmin_c_dec"]


def test_bootstrap_resamples_batches_not_only_replicates():
    """One replicate, noisy s_n per batch: only the batch draw can move the choice."""
    noisy = family_results("noisy", [4, 6, 8, 11, 16], 8, seeds=(0,), batches=8, noise=1.0)
    selector = [sel for sel in verdict_selectors(noisy) if sel.name == HAND_N]
    summary = bootstrap_selectors(selector, noisy["saes"], {HAND_N: 8.0}, FAST)[HAND_N]
    assert len(summary["plausible_l0s"]) > 1


def test_summarise_choices_marks_indistinguishable_l0s():
    summary = summarise_choices([8.0] * 17 + [11.0] * 2 + [None], 8.0)
    assert summary["plausible_l0s"] == [8.0, 11.0] and summary["point_share"] == 0.85
    assert summary["undecided_share"] == pytest.approx(0.05)
    assert summarise_choices([8.0] * 99 + [11.0], 8.0)["plausible_l0s"] == [8.0]
    assert summarise_choices([None, None], None)["interval_90"] is None


def test_summary_line_counts_hits_against_the_rate_distortion_knee():
    verdicts = [judge_family(family_results(f"toy-{t}", [2, 4, 6, 8, 11, 16, 22, 32], t), FAST) for t in (4, 8, 16)]
    line = summary_line(verdicts, toy=True)
    assert line.startswith("Across 3 toy families (true L0 known), ")
    assert "of 3 for the rate-distortion knee (rd_knee_kneedle)" in line
    assert summary_line(verdicts, toy=False) is None
    assert argmin_of("c_dec")(verdicts[0]["table"]) == 4.0


def test_leaderboard_is_deterministic_and_complete(tmp_path):
    results = results_dir(tmp_path)
    first, second = tmp_path / "first", tmp_path / "second"
    for out in (first, second):
        assert main(["leaderboard", "--results", str(results), "--out", str(out), "--resamples", "10",
                     "--no-screenshots"]) == 0
    names = ["README.md", "leaderboard.csv", "index.html", *(f"plots/{f}.png" for f in
                                                             ("toy-a", "toy-b", "llm-partial", "llm-bare"))]
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    markdown = (first / "README.md").read_text()
    assert "Across 2 toy families (true L0 known)" in markdown
    assert "Across 2 LLM family targets" in markdown
    assert "## Known truth: toy and synthetic families" in markdown
    assert "## LLM families: downstream targets" in markdown
    assert "- **llm-bare**: LLM family" in markdown and "Not judged: toy-small.json" in markdown
    csv_rows = (first / "leaderboard.csv").read_text().splitlines()
    assert csv_rows[0].startswith("family,target,target_l0,selector,chosen_l0,interval_90_low")
    # 2 toy families x 1 target + llm-partial x 2 targets + llm-bare x none, each x every selector
    assert len(csv_rows) - 1 == 5 * len(judge_family(family_results("t", [2, 4, 8], 4), FAST)["selectors"])


def test_toy_and_llm_families_get_separate_tables_with_cells_coloured_by_steps(tmp_path):
    from l0eval.publish.leaderboard import collect, group_view

    verdicts, _ = collect(results_dir(tmp_path), FAST)
    toy, llm = group_view(verdicts, toy=True), group_view(verdicts, toy=False)
    assert toy["families"] == ["toy-a", "toy-b"] and llm["families"] == ["llm-partial"]
    assert [c["target"] for c in llm["columns"]] == ["sparse_probing_k1", "absorption_fraction"]
    rows = {row["selector"]: row for row in llm["rows"]}
    probing, absorption = rows["argmin_c_dec"]["cells"]  # c_dec dips at 40: one step below the probing peak (80)
    assert probing["main"] == "40" and probing["css"] == "s1" and probing["sub"].startswith("-1 step ")
    assert absorption["css"] == "s1"
    hits = [int(row["hits"].split("/")[0]) for row in toy["rows"] if row["hits"] != "-"]
    assert hits == sorted(hits, reverse=True)  # ranked by choices within one step


def test_leaderboard_errors_are_one_line(tmp_path, capsys):
    assert main(["leaderboard", "--results", str(tmp_path / "empty"), "--out", str(tmp_path / "lb")]) == 2
    assert "l0eval: error: no family results" in capsys.readouterr().err
    assert main(["compare", "--results", str(results_dir(tmp_path)), "--resamples", "0"]) == 2


@pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_leaderboard_page_in_headless_chromium_loads_every_plot_and_no_table_overflows(tmp_path):
    out = tmp_path / "leaderboard"
    assert main(["leaderboard", "--results", str(results_dir(tmp_path)), "--out", str(out), "--resamples", "5"]) == 0
    chromium = find_chromium()
    for width in WIDTHS:
        checks = page_checks(out / "index.html", width, chromium)
        assert checks["images-loaded"] == "4/4", checks  # every plot decoded with a real size
        assert checks["tables-overflowing"] == "0/2" and checks["page-overflow"] == "no", (width, checks)
        from PIL import Image

        pixels = np.asarray(Image.open(out / f"screenshot-{width}.png").convert("L"))
        assert pixels.shape[1] == width and pixels.shape[0] > 1000 and pixels.std() > 10  # drawn, not blank
    # the checks can fail: a table wider than the window and a plot that does not load are both reported
    page = (out / "index.html").read_text()
    broken = page.replace("</body>", '<div class="table-wrap"><table style="width:3000px"><tr><td>x</td></tr>'
                                     '</table></div><img src="plots/missing.png"></body>')
    (out / "broken.html").write_text(broken)
    checks = page_checks(out / "broken.html", WIDTHS[0], chromium)
    assert checks["images-loaded"] == "4/5" and checks["tables-overflowing"] == "1/3"
