"""A hub registry family run by name, offline, through the real code path: the registry entry, its model's
profile (model_profiles.yaml) with `--activations` overrides, SAEs, model, tokenizer and corpus read from a
huggingface_hub cache in its real on-disk layout, one model pass, the metrics, selectors and verdict."""

import re

import pytest
from hub_fixtures import COMMIT, FIXTURE_MODEL, FIXTURE_OVERRIDES, registry_family_hub
from huggingface_hub import constants

from l0eval.cli import main
from l0eval.family.registry import hub_families
from l0eval.results import read_results

FAMILY = "saebench-pythia-160m-l8-topk-4k"


@pytest.fixture(scope="module")
def fixture_hub(tmp_path_factory):
    """One hub cache for the module: building the model (d_model 768, 9 layers) is the slow part."""
    cache = tmp_path_factory.mktemp("hub")
    registry_family_hub(cache, hub_families()[FAMILY])
    return cache


def use_hub_cache(monkeypatch, cache) -> None:
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))


def run_family(out, *extra: str) -> int:
    return main(["run", "--family", FAMILY, "--out", str(out), "--quiet", "--metrics", "core,snd",
                 "--activations", *FIXTURE_OVERRIDES, *extra])


def test_registry_family_runs_by_name_offline_from_the_hub_cache(fixture_hub, monkeypatch, tmp_path):
    use_hub_cache(monkeypatch, fixture_hub)
    assert run_family(tmp_path / "out") == 0
    results = read_results(tmp_path / "out" / f"{FAMILY}.json")
    llm = results["family"]["activations"]["llm"]
    assert llm["profile"] == "pythia-160m-deduped" and llm["model"] == FIXTURE_MODEL
    assert llm["exclude_bos"] is True and llm["model_dtype"] == "float32"  # the profile's, not overridden
    assert llm["dataset_files"] == ["data/train.jsonl"] and llm["context"] == 16
    activations = results["run"]["activations"]
    assert activations["revision"] == COMMIT  # the snapshot the model's files came from, not "main"
    assert activations["n_tokens"] == 12 * 16
    assert [e["id"] for e in results["saes"]] == [f"trainer_{i}" for i in range(6)]
    assert all({"ce_loss_score", "kl_div_score", "c_dec", "c_enc", "fvu"} <= set(e["metrics"])
               for e in results["saes"])
    assert results["run"]["evaluation"]["positions"] == "every position but BOS"
    l0s = [e["measured_l0"] for e in results["saes"]]
    assert l0s == sorted(l0s) and l0s[0] > 0  # TopK k = 20, 40, ..., 640
    snd = next(name for name in results["selectors"] if name.startswith("argmin_s_n_dec@") and name[15:].isdigit())
    assert results["selectors"][snd]["chosen_l0"] in [20, 40, 80, 160, 320, 640]  # nominal L0s


def test_missing_files_are_named_with_the_download_command(monkeypatch, tmp_path, capsys):
    use_hub_cache(monkeypatch, tmp_path / "empty-hub")
    assert main(["run", "--family", FAMILY, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert ("model EleutherAI/pythia-160m-deduped@main, corpus file Skylion007/openwebtext/plain_text/"
            "train-00000-of-00080.parquet, 6 of 6 SAEs not in the Hugging Face cache -> unset HF_HUB_OFFLINE, "
            f"then l0eval download --family {FAMILY}") in err
    assert not (tmp_path / "out").exists()


def test_download_checks_the_cached_inputs_and_says_what_it_fetched(fixture_hub, monkeypatch, capsys):
    use_hub_cache(monkeypatch, fixture_hub)
    assert main(["download", "--family", FAMILY, "--activations", *FIXTURE_OVERRIDES]) == 0
    out = capsys.readouterr().out
    assert out.count(" ok\n") == 6 and f"model {FIXTURE_MODEL}@main:" in out
    assert "corpus file fixture-org/tiny-corpus/data/train.jsonl:" in out
    assert "probing dataset LabHC/bias_in_bios_class_set1: not fetched (HF_HUB_OFFLINE is set)" in out
    assert "fetched 0 B into" in out  # everything was cached already


def test_train_fills_the_grid_of_a_registry_family_and_the_verdict_uses_it(fixture_hub, monkeypatch, tmp_path,
                                                                          capsys):
    use_hub_cache(monkeypatch, fixture_hub)
    train = ["train", "--family", FAMILY, "--l0", "3", "6", "--samples", "1024",
             "--batch-size", "256", "--quiet", "--activations", *FIXTURE_OVERRIDES]
    assert main(train) == 0
    assert "2 SAEs added to family 'saebench-pythia-160m-l8-topk-4k'" in capsys.readouterr().out
    assert run_family(tmp_path / "out") == 0
    results = read_results(tmp_path / "out" / f"{FAMILY}.json")
    trained = [e for e in results["saes"] if e["trained_here"]]
    assert [e["nominal_l0"] for e in trained] == [3.0, 6.0] and len(results["saes"]) == 8
    assert [row["l0"] for row in results["by_l0"]] == [3, 6, 20, 40, 80, 160, 320, 640]
    assert main(["train", "--family", "saebench-pythia-160m-l8-jumprelu-4k", "--l0", "3"]) == 2
    assert "is jumprelu: `l0eval train` trains BatchTopK SAEs" in capsys.readouterr().err


def test_profile_fields_are_overridable_per_device():
    from l0eval.family.catalog import resolve

    cpu = resolve("gemma-scope-2b-l12-res-16k").activations
    gpu = resolve("gemma-scope-2b-l12-res-16k", "cuda:0", {"sequences": 64}).activations
    assert (cpu.model, cpu.model_dtype, cpu.batch_sequences, cpu.sequences) == ("google/gemma-2-2b", "float32", 4,
                                                                                 3200)
    assert (gpu.model_dtype, gpu.batch_sequences, gpu.sequences) == ("bfloat16", 32, 64)
    assert cpu.context == 128 and cpu.exclude_bos and cpu.dataset == "Skylion007/openwebtext"


def test_a_profile_that_disables_a_metric_skips_it_unless_asked_for():
    from dataclasses import replace

    from l0eval.downstream.suite import DownstreamConfig
    from l0eval.family import profiles

    spec = hub_families()[FAMILY].activations
    profile = replace(profiles.model_profiles()[spec.profile], absorption=False)
    profile_table = {**profiles.model_profiles(), spec.profile: profile}
    config = profiles.downstream_for(spec, DownstreamConfig(), profile_table)
    assert "absorption" not in config.metrics and "disables it" in config.skipped["absorption"]
    asked = DownstreamConfig(metrics=("absorption",), explicit=True)
    assert profiles.downstream_for(spec, asked, profile_table) == asked


def test_every_registry_family_inherits_its_models_profile():
    from l0eval.family.profiles import model_profiles

    profiled = [f for f in hub_families().values() if f.members.model in model_profiles()]
    assert len(profiled) >= 42 and {f.activations.profile for f in profiled} == {"pythia-160m-deduped", "gemma-2-2b"}
    assert all(f.activations.profile == f.members.model and f.activations.hook == f.members.hook for f in profiled)


@pytest.mark.parametrize(("profile", "message"), [
    ({"activations": {"model": "m", "texts": ["a.txt"], "contxt": 8}}, "unknown key 'activations.contxt'"),
    ({"activations": {"model": "m", "texts": ["a.txt"], "batch_sequences": {"cpu": 8}}},
     "missing required key 'profiles.p.activations.batch_sequences.cuda'"),
    ({"activations": {"model": "m", "texts": ["a.txt"]}, "downstream": {"absorption": "yes"}}, "true or false"),
    ({"activations": {"model": "m", "texts": ["a.txt"], "sequences": 0}}, "'activations.sequences' must be >= 1")])
def test_a_bad_profile_is_refused_naming_the_key(profile, message):
    from l0eval.errors import SpecError
    from l0eval.family.profiles import _parse_profile

    with pytest.raises(SpecError, match=re.escape(message)):
        _parse_profile("p", profile)
