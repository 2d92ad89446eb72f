"""SAEBench's published results as targets: files in the real dataset layout of a hub cache, a family of tiny
SAEBench-style trainers in the real model-repo layout, `l0eval run --targets saebench` through the CLI, offline."""

import json

import pytest
import yaml
from hub_fixtures import add_repo_files, dictionary_learning_files, saebench_result_files

from l0eval.cli import main
from l0eval.downstream.saebench_targets import DEFAULT_DATASET, published_name
from l0eval.family.registry import hub_families
from l0eval.selection.verdict import judge_family

D_IN, WIDTH, LAYER, MODEL = 16, 64, 8, "pythia-160m-deduped"
KS = [2, 4, 8, 16, 32, 48]
RELEASE = f"saebench_{MODEL}_width-2pow6_date-0108"  # SAEBench's results folder for a 2**6-wide family
WEIGHTS_REPO = "fixture-org/saebench_tiny"
# SAEBench's numbers per trainer: probing peaks at k=8 (trainer_2), absorption is lowest at k=16 (trainer_3)
PROBING = [0.60, 0.66, 0.74, 0.70, 0.68, 0.65]
ABSORPTION = [0.40, 0.30, 0.20, 0.10, 0.15, 0.25]
EXPLAINED = [0.50, 0.70, 0.80, 0.85, 0.87, 0.88]


def location(i: int) -> str:
    return f"TopK_{MODEL}__0108/resid_post_layer_{LAYER}/trainer_{i}"


def unique_id(i: int) -> str:
    """SAEBench's name for a dictionary_learning SAE (run_all_evals_dictionary_learning_saes.run_evals)."""
    return f"{RELEASE}_{location(i).replace('/', '_')}"


def published_files(i: int, d_sae: int = WIDTH, **overrides) -> dict[str, bytes]:
    cfg = {"model_name": MODEL, "d_in": D_IN, "d_sae": d_sae, "hook_layer": LAYER,
           "hook_name": f"blocks.{LAYER}.hook_resid_post", "architecture": "topk", "training_tokens": 499998720}
    values = {"l0": KS[i] * 1.0, "explained_variance": EXPLAINED[i], "mse": 1.0 - EXPLAINED[i],
              "probing": {"ds_a": PROBING[i] - 0.01, "ds_b": PROBING[i] + 0.01},
              "absorption": {"a": ABSORPTION[i] - 0.02, "b": ABSORPTION[i] + 0.02}, **overrides}
    return saebench_result_files(unique_id(i), RELEASE, cfg, **values)


@pytest.fixture
def family_file(hf_cache, tmp_path):
    """Six tiny TopK trainers in the hub cache, their SAEBench results in the results dataset's layout."""
    weights = {}
    for i, k in enumerate(KS):
        weights.update(dictionary_learning_files(location(i), "AutoEncoderTopK", D_IN, WIDTH, k=k, seed=i,
                                                 layer=LAYER))
    add_repo_files(hf_cache, WEIGHTS_REPO, weights)
    published = {}
    for i in range(len(KS)):
        published.update(published_files(i))
    add_repo_files(hf_cache, DEFAULT_DATASET, published, repo_type="dataset")
    spec = {"name": "tiny-saebench-topk", "kind": "saes", "description": "tiny SAEBench-style TopK trainers",
            "model": MODEL, "hook": f"blocks.{LAYER}.hook_resid_post", "d_in": D_IN, "width": WIDTH,
            "architecture": "topk",
            "members": [{"id": f"trainer_{i}", "repo_id": WEIGHTS_REPO, "path": location(i),
                         "format": "dictionary_learning", "nominal_l0": k} for i, k in enumerate(KS)]}
    path = tmp_path / "family.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run_cli(*args: str) -> int:
    return main(["run", *args, "--quiet"])


def test_run_with_saebench_targets_judges_without_a_model_pass(family_file, tmp_path, capsys):
    out = tmp_path / "results"
    assert run_cli("--family", str(family_file), "--targets", "saebench", "--out", str(out)) == 0
    results = json.loads((out / "tiny-saebench-topk.json").read_text())
    entries = {e["id"]: e for e in results["saes"]}
    assert [entries[f"trainer_{i}"]["measured_l0"] for i in range(6)] == [float(k) for k in KS]
    assert entries["trainer_2"]["metrics"]["saebench_sparse_probing_k1"] == pytest.approx(PROBING[2])
    assert entries["trainer_3"]["metrics"]["saebench_absorption_fraction"] == pytest.approx(ABSORPTION[3])
    assert entries["trainer_0"]["metrics"]["variance_explained"] == pytest.approx(EXPLAINED[0])
    assert entries["trainer_0"]["metrics"]["c_dec"] > 0
    source = entries["trainer_2"]["downstream"]["saebench"]["sources"]["sparse_probing"]
    assert source["repo_id"] == DEFAULT_DATASET and source["revision"] == "0123456789abcdef0123456789abcdef01234567"
    assert source["path"] == f"sparse_probing/{RELEASE}/{unique_id(2)}_eval_results.json"
    assert results["ground_truth"]["target_sources"]["absorption"]["repo_id"] == DEFAULT_DATASET
    assert results["run"]["evaluation"]["model_pass"] is False
    snd = results["selectors"]["s_n_dec_self_consistent"]
    assert snd["chosen_l0"] is None and snd["reason"].startswith("not computed: s_n_dec")
    assert results["selectors"]["rd_budget_90"]["chosen_l0"] is not None

    verdict = judge_family(results)
    targets = {t.name: t.l0 for t in verdict["targets"]}
    assert targets["saebench_sparse_probing_k1"] == 8 and targets["saebench_absorption_fraction"] == 16
    assert all(t.resampled_l0 is not None for t in verdict["targets"])  # bootstrapped over datasets and letters
    judged = {row["selector"] for row in verdict["rows"]}
    assert "argmin_c_dec" in judged and "rd_knee_kneedle" in judged
    assert not any(name.startswith(("argmin_s_n_dec", "s_n_dec")) for name in judged)


def test_result_file_of_another_sae_is_refused_and_nothing_is_written(family_file, hf_cache, tmp_path, capsys):
    wrong = published_files(4)[f"core/{RELEASE}/{unique_id(4)}_eval_results.json"]
    add_repo_files(hf_cache, DEFAULT_DATASET, {f"core/{RELEASE}/{unique_id(1)}_eval_results.json": wrong},
                   repo_type="dataset")
    out = tmp_path / "results"
    out.mkdir()
    (out / "tiny-saebench-topk.json").write_text("earlier results")
    assert run_cli("--family", str(family_file), "--targets", "saebench", "--out", str(out)) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and error.startswith("l0eval: error: ")
    assert "about another SAE" in error and unique_id(4) in error and unique_id(1) in error
    assert (out / "tiny-saebench-topk.json").read_text() == "earlier results"


def test_result_file_of_another_width_is_refused(family_file, hf_cache, tmp_path, capsys):
    path = f"sparse_probing/{RELEASE}/{unique_id(3)}_eval_results.json"
    add_repo_files(hf_cache, DEFAULT_DATASET, {path: published_files(3, d_sae=4 * WIDTH)[path]}, repo_type="dataset")
    assert run_cli("--family", str(family_file), "--targets", "saebench", "--out", str(tmp_path / "r")) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and path in error and f"d_sae is {4 * WIDTH}, the member's {WIDTH}" in error


def test_missing_result_file_names_it_and_the_download_command(family_file, hf_cache, tmp_path, capsys):
    missing = hf_cache / "datasets--adamkarvonen--sae_bench_results_0125" / "snapshots"
    next(missing.rglob(f"absorption/{RELEASE}/{unique_id(5)}_eval_results.json")).unlink()
    assert run_cli("--family", str(family_file), "--targets", "saebench", "--out", str(tmp_path / "r")) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert f"absorption/{RELEASE}/{unique_id(5)}_eval_results.json" in error
    assert f"l0eval download --family {family_file} --targets saebench" in error
    assert not (tmp_path / "r" / "tiny-saebench-topk.json").exists()


def test_current_sae_bench_core_files_parse_too(family_file, hf_cache, tmp_path):
    """Files written by sae-bench 0.6.0 (explained_variance_legacy present) import the legacy value."""
    newer = published_files(0, jan_2025=False)
    add_repo_files(hf_cache, DEFAULT_DATASET, newer, repo_type="dataset")
    assert run_cli("--family", str(family_file), "--targets", "saebench", "--out", str(tmp_path / "r")) == 0
    results = json.loads((tmp_path / "r" / "tiny-saebench-topk.json").read_text())
    assert results["saes"][0]["metrics"]["variance_explained"] == pytest.approx(EXPLAINED[0])


def test_sae_probes_results_are_a_target_when_asked_for(family_file, hf_cache, tmp_path):
    f1 = [0.50, 0.55, 0.60, 0.66, 0.62, 0.58]  # peaks at k=16 (trainer_3)
    files = {}
    for i in range(len(KS)):
        files.update({path: content for path, content in
                      published_files(i, sae_probes={"1_hist": f1[i] - 0.01, "2_fake": f1[i] + 0.01}).items()
                      if path.startswith("sparse_probing_sae_probes/")})
    add_repo_files(hf_cache, DEFAULT_DATASET, files, repo_type="dataset")
    out = tmp_path / "r"
    assert run_cli("--family", str(family_file), "--targets", "saebench", "--saebench-evals",
                   "core,sparse_probing_sae_probes", "--out", str(out)) == 0
    results = json.loads((out / "tiny-saebench-topk.json").read_text())
    assert results["saes"][3]["metrics"]["saebench_sae_probes_k1"] == pytest.approx(f1[3])
    assert "saebench_sparse_probing_k1" not in results["saes"][3]["metrics"]
    assert {t.name: t.l0 for t in judge_family(results)["targets"]} == {"saebench_sae_probes_k1": 16}


def test_registry_families_map_to_the_published_file_names():
    """Every SAEBench registry family has published names of the form SAEBench's graphing code selects."""
    families = {name: f for name, f in hub_families().items() if name.startswith("saebench-")}
    assert len(families) == 42
    pythia = families["saebench-pythia-160m-l8-topk-16k"].members
    name = published_name(pythia.model, pythia.layer, pythia.width, pythia.architecture, "trainer_2")
    assert name.path("core") == ("core/saebench_pythia-160m-deduped_width-2pow14_date-0108/saebench_pythia-160m-"
                                 "deduped_width-2pow14_date-0108_TopK_pythia-160m-deduped__0108_resid_post_layer_8_"
                                 "trainer_2_eval_results.json")
    for family in families.values():  # the adamkarvonen repos' folders are the published locations themselves
        saes = family.members
        if saes.saes[0].repo_id.startswith("adamkarvonen/"):
            member = saes.saes[0]
            expected = published_name(saes.model, saes.layer, saes.width, saes.architecture, member.id)
            assert expected.location == member.path and expected.release == member.repo_id.split("/")[1]


@pytest.mark.parametrize("change, expected", [({"nominal_l0": 9}, "k / target L0 8 in its config, 9 in the family"),
                                              ({"width": 128}, "width (dict_size/d_sae) 64 in its config, 128")])
def test_cached_config_that_disagrees_with_the_family_is_refused(family_file, tmp_path, capsys, change, expected):
    spec = yaml.safe_load(family_file.read_text())
    if "width" in change:
        spec["width"] = change["width"]
    else:
        spec["members"][2]["nominal_l0"] = change["nominal_l0"]
    family_file.write_text(yaml.safe_dump(spec))
    assert run_cli("--family", str(family_file), "--targets", "saebench", "--out", str(tmp_path / "r")) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "member 'trainer_" in error and expected in error
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_download_with_targets_checks_every_cached_result_file(family_file, capsys):
    assert main(["download", "--family", str(family_file), "--targets", "saebench"]) == 0
    assert f"18 SAEBench result files of {DEFAULT_DATASET} cached and checked" in capsys.readouterr().out


def test_gemma_scope_family_has_no_saebench_results(capsys):
    assert run_cli("--family", "gemma-scope-2b-l12-res-16k", "--targets", "saebench") == 2
    assert "not one of the SAEBench suite's families" in capsys.readouterr().err


def test_unknown_eval_type_is_one_line(family_file, capsys):
    assert run_cli("--family", str(family_file), "--targets", "saebench", "--saebench-evals", "core,scr") == 2
    assert "unknown: scr" in capsys.readouterr().err
