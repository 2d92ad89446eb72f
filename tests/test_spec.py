"""Bad family specs get a one-line error naming the problem; the CLI prints it without a traceback."""

import pytest
import yaml

from l0eval.errors import SpecError
from l0eval.family.toy_spec import load_family_file, parse_family, toy_spec_by_name


def tiny_family(**overrides):
    family = {
        "name": "tiny", "kind": "toy",
        "toy": {"n_features": 6, "d_model": 12, "probabilities": {"constant": 0.3}},
        "sae": {"d_sae": 6, "k": [1, 2, 3]},
        "training": {"samples": 4096, "batch_size": 512},
    }
    for path, value in overrides.items():
        target = family
        *parents, last = path.split(".")
        for key in parents:
            target = target.setdefault(key, {})
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return family


DELETE = object()


def test_builtin_families_parse():
    toy = toy_spec_by_name("toy")
    assert toy.sae.k_values == tuple(float(k) for k in range(1, 26))
    assert toy_spec_by_name("toy-small").mixing.rho == (-0.4, -0.2, 0.0, 0.2, 0.4)


@pytest.mark.parametrize("overrides, message", [
    ({"toy.n_feature": 6}, "unknown key 'toy.n_feature' (did you mean 'n_features'?)"),
    ({"trainng": {}}, "unknown key 'trainng' (did you mean 'training'?)"),
    ({"toy.probabilities": [0.3, -0.1, 0.3, 0.3, 0.3, 0.3]}, "'toy.probabilities[1]' must be > 0.0"),
    ({"toy.probabilities": [0.3, 0.3]}, "has 2 entries but toy.n_features is 6"),
    ({"sae.k": [1, 7]}, "'sae.k' value 7 is larger than sae.d_sae=6"),
    ({"sae.k": [0, 1]}, "'sae.k[0]' must be > 0.0"),
    ({"sae.k": [2, 2]}, "repeated values"),
    ({"toy.d_model": "100"}, "'toy.d_model' must be an integer"),
    ({"toy.correlation": {"star": {"rho": 1.5}}}, "'toy.correlation.star.rho' must be <= 1.0"),
    ({"toy.correlation": {"random": {"strength": [0.9, 0.3]}}}, "low <= high"),
    ({"training.samples": 10}, "smaller than one batch"),
    ({"training.dead_feature_window": 3}, "'training.dead_feature_window': dead_feature_window 3 is longer than a "
                                          "quarter of the 8 training steps"),
    ({"training.seeds": [1, 1]}, "'training.seeds' has repeated values"),
    ({"sae.init": "zeros"}, "'sae.init' must be 'random' or 'ground_truth'"),
    ({"kind": "llm"}, "'kind' must be 'toy' or 'toy-mixing'"),
    ({"sae": DELETE}, "missing required key 'sae'"),
    ({"evaluation.n_values": [6]}, "'evaluation.n_values[0]' must be <= 5"),
])
def test_bad_spec_is_one_clear_error(overrides, message):
    with pytest.raises(SpecError) as error:
        parse_family(tiny_family(**overrides))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_true_l0_follows_from_a_user_spec(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(tiny_family(**{"toy.probabilities": {"linear": {"high": 0.5, "low": 0.1}}})))
    spec = load_family_file(path)
    assert spec.toy.true_l0 == pytest.approx(6 * 0.3)
    assert spec.source == str(path)


def test_fingerprint_tracks_training_not_evaluation():
    base = parse_family(tiny_family())
    assert base.fingerprint() == parse_family(tiny_family(**{"evaluation.samples": 5})).fingerprint()
    assert base.fingerprint() != parse_family(tiny_family(**{"training.lr": 1e-3})).fingerprint()


def test_cli_reports_a_bad_spec_in_one_line_without_traceback(tmp_path, cli):
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(tiny_family(**{"toy.n_feature": 6})))
    result = cli(["run", "--family", str(path), "--out", str(tmp_path)])
    assert result.code == 2
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("l0eval: error:")]
    assert error_lines == [f"l0eval: error: {path}: unknown key 'toy.n_feature' (did you mean 'n_features'?)"]


@pytest.mark.parametrize("family, message", [
    ("no-such-family", "unknown family 'no-such-family'"),
    ("missing.yaml", "family file not found: missing.yaml"),
])
def test_cli_unknown_family(tmp_path, cli, family, message):
    result = cli(["run", "--family", family, "--out", str(tmp_path)], cwd=tmp_path)
    assert result.code == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_cli_rejects_invalid_yaml(tmp_path, cli):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    result = cli(["run", "--family", str(path)], cwd=tmp_path)
    assert result.code == 2 and "not valid YAML" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("flags, message", [
    (["--samples", "10"], "--samples 10 is smaller than one batch (1024)"),
    (["--seeds", "0"], "--seeds must be in 1..1,000, got 0"),
    (["--seed", "-3"], "--seed must be in 0..4,294,967,295, got -3"),
    (["--device", "cuda:7"], "torch sees no CUDA device"),
])
def test_cli_rejects_bad_run_flags(tmp_path, cli, flags, message):
    import torch

    if flags[0] == "--device" and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    result = cli(["run", "--family", "toy", "--out", str(tmp_path), *flags])
    assert result.code == 2 and message in result.stderr and "Traceback" not in result.stderr
