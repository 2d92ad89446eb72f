"""Hub families: every published format loads through the real huggingface_hub cache, offline, into a
sae-lens SAE that encodes and decodes as its source format defines; bad files are refused clearly."""

import json
import pickle
import subprocess
import sys
import time

import pytest
import torch
import yaml
from hub_fixtures import (
    add_repo_files,
    dictionary_learning_files,
    dictionary_learning_state,
    gemma_scope_files,
    random_weights,
    sae_lens_files,
)

from l0eval.family.catalog import family_table, resolve
from l0eval.family.registry import LoadedMember, hub_families
from l0eval.saes.hub_cache import is_cached
from l0eval.saes.loaders import LoadError, load_member

D_IN, D_SAE, K = 16, 32, 4


def inputs(seed=1, n=64):
    return torch.randn(n, D_IN, generator=torch.Generator().manual_seed(seed))


# What each source format's own code computes (dictionary_learning's encode/decode; Gemma Scope's JumpReLU).
def reference_encode(dict_class, state, x):
    if dict_class == "AutoEncoder":
        return torch.relu((x - state["bias"]) @ state["encoder.weight"].T + state["encoder.bias"])
    if dict_class == "AutoEncoderTopK":
        post = torch.relu((x - state["b_dec"]) @ state["encoder.weight"].T + state["encoder.bias"])
        top = post.topk(int(state["k"]), dim=-1)
        return torch.zeros_like(post).scatter(-1, top.indices, top.values)
    if dict_class == "BatchTopKSAE":  # inference uses the learned global threshold, not top-k
        post = torch.relu((x - state["b_dec"]) @ state["encoder.weight"].T + state["encoder.bias"])
        return post * (post > state["threshold"])
    if dict_class == "MatryoshkaBatchTopKSAE":
        post = torch.relu((x - state["b_dec"]) @ state["W_enc"] + state["b_enc"])
        return post * (post > state["threshold"])
    if dict_class == "JumpReluAutoEncoder":  # no b_dec subtraction before encoding
        pre = x @ state["W_enc"] + state["b_enc"]
        return torch.relu(pre * (pre > state["threshold"]))
    if dict_class == "GatedAutoEncoder":
        x_enc = (x - state["decoder_bias"]) @ state["encoder.weight"].T
        gate = (x_enc + state["gate_bias"]) > 0
        return gate * torch.relu(torch.exp(state["r_mag"]) * x_enc + state["mag_bias"])
    raise ValueError(dict_class)


def reference_decode(dict_class, state, acts):
    if "decoder.weight" in state:
        bias = state.get("bias", state.get("b_dec", state.get("decoder_bias")))
        return acts @ state["decoder.weight"].T + bias
    return acts @ state["W_dec"] + state["b_dec"]


@pytest.mark.parametrize("dict_class", ["AutoEncoder", "AutoEncoderTopK", "BatchTopKSAE", "MatryoshkaBatchTopKSAE",
                                        "JumpReluAutoEncoder", "GatedAutoEncoder"])
def test_dictionary_learning_trainer_folders_load_offline_and_match_the_source(hf_cache, dict_class):
    repo = "saebench/tiny_pythia_width-2pow5"
    folder = f"{dict_class}_tiny/resid_post_layer_3/trainer_0"
    add_repo_files(hf_cache, repo, dictionary_learning_files(folder, dict_class, D_IN, D_SAE, k=K))
    member = LoadedMember(id="trainer_0", nominal_l0=K, format="dictionary_learning", path=folder, repo_id=repo)
    assert is_cached(member)
    sae = load_member(member, d_in=D_IN)
    state = dictionary_learning_state(dict_class, random_weights(D_IN, D_SAE, 0), k=K)
    x = inputs()
    with torch.no_grad():
        acts = sae.encode(x)
        assert torch.allclose(acts, reference_encode(dict_class, state, x), atol=1e-5)
        assert torch.allclose(sae.decode(acts), reference_decode(dict_class, state, acts), atol=1e-5)
    assert sae.cfg.metadata.hook_name == "blocks.3.hook_resid_post"
    if dict_class == "AutoEncoderTopK":
        assert ((acts != 0).sum(-1) <= K).all()


def test_gemma_scope_params_npz_loads_as_jumprelu(hf_cache):
    repo = "google/gemma-scope-2b-pt-res"
    folder = "layer_12/width_16k/average_l0_22"
    add_repo_files(hf_cache, repo, gemma_scope_files(folder, D_IN, D_SAE))
    # the real converter infers d_in 2304 / d_sae 16384 from the names; the tiny fixture overrides them
    member = LoadedMember(id=folder, nominal_l0=22, format="gemma_scope", path=folder, repo_id=repo,
                    cfg_overrides={"d_in": D_IN, "d_sae": D_SAE})
    sae = load_member(member, d_in=D_IN)
    weights = random_weights(D_IN, D_SAE, 0)
    x = inputs()
    pre = x @ weights["W_enc"] + weights["b_enc"]  # Gemma Scope: no b_dec subtraction
    with torch.no_grad():
        assert torch.allclose(sae.encode(x), torch.relu(pre) * (pre > 0.1), atol=1e-5)
    assert sae.cfg.architecture() == "jumprelu"


def test_sae_lens_native_repo_and_release_metadata(hf_cache):
    repo = "someone/tiny-saes"
    add_repo_files(hf_cache, repo, sae_lens_files("l0_8", D_IN, D_SAE))
    sae = load_member(LoadedMember(id="l0_8", nominal_l0=8, format="sae_lens", path="l0_8", repo_id=repo), d_in=D_IN)
    weights = random_weights(D_IN, D_SAE, 0)
    x = inputs()
    with torch.no_grad():
        expected = torch.relu((x - weights["b_dec"]) @ weights["W_enc"] + weights["b_enc"])
        assert torch.allclose(sae.encode(x), expected, atol=1e-5)


def test_gemma_scope_registry_families_come_from_sae_lens_metadata():
    family = hub_families()["gemma-scope-2b-l12-res-16k"]
    assert [m.nominal_l0 for m in family.members.saes] == [22, 41, 82, 176, 445]
    assert all(m.release == "gemma-scope-2b-pt-res" and m.converter == "gemma_2" for m in family.members.saes)
    assert family.members.saes[2].path == "layer_12/width_16k/average_l0_82"


def test_registry_covers_the_saebench_suites():
    families = hub_families()
    assert len(families) >= 20
    for arch in ("standard", "topk", "batchtopk", "jumprelu", "gated", "panneal", "matryoshka"):
        for width in ("4k", "16k", "65k"):
            gemma = families[f"saebench-gemma-2-2b-l12-{arch}-{width}"]
            pythia = families[f"saebench-pythia-160m-l8-{arch}-{width}"]
            assert len(gemma.members.saes) == len(pythia.members.saes) == 6
            assert gemma.members.d_in == 2304 and pythia.members.d_in == 768
    assert families["saebench-gemma-2-2b-l12-topk-16k"].members.saes[0].repo_id == \
        "canrager/saebench_gemma-2-2b_width-2pow14_date-0107"
    topk_4k = families["saebench-gemma-2-2b-l12-topk-4k"].members.saes
    assert [m.nominal_l0 for m in topk_4k] == [20, 40, 80, 160, 320, 640]


# ---------------------------------------------------------------------------------------------
# bad inputs: each refused with one clear line naming the file; nothing else in the cache harmed


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_payload_in_ae_pt_is_refused_and_never_runs(hf_cache, tmp_path):
    repo = "attacker/saes"
    folder = "BatchTopK/trainer_0"
    files = dictionary_learning_files(folder, "BatchTopKSAE", D_IN, D_SAE)
    marker = tmp_path / "payload-ran"
    files[f"{folder}/ae.pt"] = pickle.dumps({"encoder.weight": _Payload(marker)})
    add_repo_files(hf_cache, repo, files)
    with pytest.raises(LoadError, match=f"cannot load {repo}/{folder}: UnpicklingError"):
        load_member(LoadedMember(id="t0", nominal_l0=4, format="dictionary_learning", path=folder, repo_id=repo))
    assert not marker.exists()


def test_bad_files_are_refused_with_the_file_named(hf_cache):
    repo = "broken/saes"
    files = {}
    files.update(sae_lens_files("truncated", D_IN, D_SAE))
    files["truncated/sae_weights.safetensors"] = files["truncated/sae_weights.safetensors"][:100]
    files.update(sae_lens_files("nan", D_IN, D_SAE, seed=1))
    nan_weights = random_weights(D_IN, D_SAE, 1)
    nan_weights["W_dec"][0, 0] = float("nan")
    from safetensors.torch import save as safetensors_bytes

    files["nan/sae_weights.safetensors"] = safetensors_bytes(nan_weights)
    files.update(sae_lens_files("shape", D_IN, D_SAE, seed=2, extra_cfg={"d_sae": D_SAE + 1}))
    missing = dictionary_learning_files("missing_key/trainer_0", "AutoEncoder", D_IN, D_SAE)
    missing["missing_key/trainer_0/config.json"] = b'{"trainer": {"layer": 3}, "buffer": {"ctx_len": 128}}'
    files.update(missing)
    files.update(sae_lens_files("good", D_IN, D_SAE, seed=3))
    add_repo_files(hf_cache, repo, files)

    def member(path, fmt="sae_lens"):
        return LoadedMember(id=path, nominal_l0=1, format=fmt, path=path, repo_id=repo)

    cases = [(member("truncated"), "cannot load broken/saes/truncated"),
             (member("nan"), "broken/saes/nan: W_dec contains NaN or inf"),
             (member("shape"), "cannot load broken/saes/shape"),
             (member("missing_key/trainer_0", "dictionary_learning"),
              "cannot load broken/saes/missing_key/trainer_0: KeyError")]
    for bad, message in cases:
        with pytest.raises(LoadError) as error:
            load_member(bad)
        assert message in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(LoadError, match="SAE d_in is 16 but the family's activations have d_in 100"):
        load_member(member("good"), d_in=100)
    assert load_member(member("good"), d_in=D_IN) is not None  # the cache is intact for everything else


def test_not_cached_while_offline_is_a_clear_error(hf_cache):
    member = LoadedMember(id="t", nominal_l0=1, format="dictionary_learning", path="nowhere/trainer_0",
                    repo_id="nobody/nothing")
    assert not is_cached(member)
    with pytest.raises(LoadError, match="nobody/nothing/nowhere/trainer_0 is not in the Hugging Face cache and "
                                        "HF_HUB_OFFLINE is set"):
        load_member(member)


# ---------------------------------------------------------------------------------------------
# user families and the CLI


def write_local_family(tmp_path, toy_name="tiny-for-hub"):
    """A toy spec, SAEs trained on it by l0eval saved as local SAELens folders, and a `kind: saes` family."""
    from l0eval.activations.toy.model import ToyModel
    from l0eval.family.toy_family import toy_members
    from l0eval.family.toy_spec import parse_family
    from l0eval.runs.toy import train_or_load

    toy = {"name": toy_name, "kind": "toy",
           "toy": {"n_features": 8, "d_model": 16, "probabilities": {"constant": 0.3}, "embedding": {"steps": 100}},
           "sae": {"d_sae": 8, "k": [1, 2, 3, 4]},
           "training": {"samples": 40_000, "batch_size": 256, "lr": 3.0e-3},
           "evaluation": {"samples": 4_000}, "selectors": {"snd_n": [3]}}
    toy_path = tmp_path / f"{toy_name}.yaml"
    toy_path.write_text(yaml.safe_dump(toy))
    spec = parse_family(toy)
    saes, _ = train_or_load(spec, ToyModel(spec.toy), toy_members(spec), "cpu", progress=False)
    members = []
    for k, sae in zip(spec.sae.k_values, saes):
        sae.save_model(str(tmp_path / "saes" / f"k{k:g}"))
        members.append({"path": f"saes/k{k:g}", "nominal_l0": k})
    family = {"name": "my-local-family", "kind": "saes", "d_in": 16, "architecture": "batchtopk",
              "activations": {"toy": str(toy_path)}, "members": members}
    family_path = tmp_path / "family.yaml"
    family_path.write_text(yaml.safe_dump(family))
    return family_path


def test_user_family_of_local_sae_lens_folders_runs_end_to_end(tmp_path, capsys):
    from l0eval.cli import main
    from l0eval.results import read_results

    family_path = write_local_family(tmp_path)
    assert main(["run", "--family", str(family_path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    results = read_results(tmp_path / "out" / "my-local-family.json")
    assert [s["nominal_l0"] for s in results["saes"]] == [1, 2, 3, 4]
    assert all(s["trained_here"] is False for s in results["saes"])
    assert results["ground_truth"]["true_l0"] == pytest.approx(2.4)
    assert results["selectors"]["argmin_s_n_dec@3"]["chosen_l0"] in (1, 2, 3, 4)
    assert "L0 chosen by each selector" in capsys.readouterr().out


def test_user_family_errors(tmp_path):
    family = {"name": "f", "kind": "saes", "d_in": 16, "members": [{"path": "missing", "nominal_l0": 2}],
              "activations": {"toy": "toy"}}
    path = tmp_path / "f.yaml"
    path.write_text(yaml.safe_dump(family))
    from l0eval.cli import main

    assert main(["run", "--family", str(path), "--out", str(tmp_path)]) == 2  # d_in 16 vs toy's 100
    family["members"][0]["pth"] = "x"
    path.write_text(yaml.safe_dump(family))
    with pytest.raises(Exception, match=r"unknown key 'members\[0\].pth' \(did you mean 'path'\?\)"):
        resolve(str(path))


def test_families_lists_hub_and_toy_families_offline_and_fast(hf_cache):
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hf_cache), "PATH": "/usr/bin:/bin"}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "l0eval.cli", "families"], capture_output=True, text=True,
                            env=env, timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sum(line.startswith(("saebench-", "gemma-scope-")) for line in lines) >= 20
    assert any(line.startswith("toy ") for line in lines) and any(line.startswith("toy-small") for line in lines)
    assert "import torch" not in result.stderr
    print(f"`l0eval families` took {elapsed:.2f}s")  # the figure itself is measured by scripts/, not asserted


def test_families_show_and_cache_status(hf_cache):
    family = hub_families()["saebench-pythia-160m-l8-topk-4k"]
    member = family.members.saes[0]
    add_repo_files(hf_cache, member.repo_id,
                   dictionary_learning_files(member.path, "AutoEncoderTopK", 768, 64))
    table = family_table()
    line = next(row for row in table.splitlines() if row.startswith("saebench-pythia-160m-l8-topk-4k "))
    assert line.endswith("1/6")
    from l0eval.family.catalog import describe_family

    shown = describe_family(resolve("saebench-pythia-160m-l8-topk-4k"))
    assert "trainer_0" in shown and "cached" in shown and "nominal L0     20" in shown


def test_download_command_checks_every_member_from_the_cache(hf_cache, capsys):
    from l0eval.cli import main

    family = hub_families()["saebench-pythia-160m-l8-topk-4k"]
    for index, member in enumerate(family.members.saes[:5]):
        files = dictionary_learning_files(member.path, "AutoEncoderTopK", 768, 64, k=int(member.nominal_l0) // 10,
                                          seed=index, layer=8)
        add_repo_files(hf_cache, member.repo_id, files)
    assert main(["download", "--family", family.name]) == 2  # trainer_5 is not cached and we are offline
    assert "trainer_5 is not in the Hugging Face cache and HF_HUB_OFFLINE is set" in capsys.readouterr().err
    last = family.members.saes[5]
    add_repo_files(hf_cache, last.repo_id, dictionary_learning_files(last.path, "AutoEncoderTopK", 768, 64, k=64,
                                                                     layer=8))
    assert main(["download", "--family", family.name]) == 2  # every SAE checked, then the model is not cached
    captured = capsys.readouterr()
    assert captured.out.count(" ok") == 6 and "topk d_in=768 d_sae=64" in captured.out
    assert "cannot fetch model EleutherAI/pythia-160m-deduped@main" in captured.err  # (test_registry_run: all of it)


def test_registry_gemma_scope_member_loads_through_its_sae_lens_release(hf_cache):
    """The registry member goes through SAE.from_pretrained(release, sae_id) and the release's converter."""
    import dataclasses

    member = hub_families()["gemma-scope-2b-l12-res-16k"].members.saes[0]
    add_repo_files(hf_cache, member.repo_id, gemma_scope_files(member.path, D_IN, D_SAE, seed=4))
    tiny = dataclasses.replace(member, cfg_overrides={"d_in": D_IN, "d_sae": D_SAE})
    assert is_cached(tiny)
    sae = load_member(tiny, d_in=D_IN)
    assert sae.cfg.metadata.hook_name == "blocks.12.hook_resid_post"
    assert torch.equal(sae.W_dec, random_weights(D_IN, D_SAE, 4)["W_dec"])


def test_measured_l0_far_from_nominal_is_flagged(capsys):
    from l0eval.runs.notices import flag_l0_disagreements

    entries = [{"id": "ok", "nominal_l0": 10.0, "measured_l0": 11.0},
               {"id": "wrong", "nominal_l0": 10.0, "measured_l0": 31.0},
               {"id": "unknown", "nominal_l0": None, "measured_l0": 5.0}]
    flag_l0_disagreements(entries)
    assert "warning" not in entries[0] and "warning" not in entries[2]
    assert "measured L0 31 is far from nominal 10" in entries[1]["warning"]
    assert "l0eval: warning: wrong:" in capsys.readouterr().err


def test_unknown_dictionary_learning_class_is_refused_not_read_as_relu(hf_cache):
    """sae-lens's converter reads any dict_class it does not know as a plain ReLU SAE: refused instead."""
    repo, folder = "saebench/mystery", "mystery/trainer_0"
    files = dictionary_learning_files(folder, "AutoEncoder", D_IN, D_SAE)
    config = json.loads(files[f"{folder}/config.json"])
    config["trainer"]["dict_class"] = "MysteryAutoEncoder"
    files[f"{folder}/config.json"] = json.dumps(config).encode()
    add_repo_files(hf_cache, repo, files)
    member = LoadedMember(id="trainer_0", nominal_l0=4, format="dictionary_learning", path=folder, repo_id=repo)
    with pytest.raises(LoadError, match="dictionary_learning class 'MysteryAutoEncoder' is not one sae-lens converts"):
        load_member(member)


def test_generated_families_have_power_of_two_widths_and_residual_hooks_only():
    from l0eval.family.catalog import generated_families

    families = generated_families()
    assert families["gemma-scope-2b-pt-res/layer_12/width_65k"].members.width == 65536
    assert families["gemma-scope-2b-pt-res/layer_12/width_1m"].members.width == 2**20
    assert all(f.members.hook == f"blocks.{f.members.layer}.hook_resid_post" for f in families.values())
    assert not any("-mlp" in name or "-att" in name for name in families)


def test_jumprelu_registry_families_carry_their_target_l0s():
    for name, family in hub_families().items():
        if "-jumprelu-" in name:
            assert [m.nominal_l0 for m in family.members.saes] == [20, 40, 80, 160, 320, 640]
