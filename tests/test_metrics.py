"""Metric definitions on hand-made inputs where the right answer is known exactly."""

import math

import pytest
import torch

from l0eval.metrics.cosine import decoder_cosine, encoder_cosine, mean_abs_pairwise_cosine
from l0eval.metrics.decoder_projection import (
    DecoderProjectionAccumulator,
    decoder_projections,
    nth_largest_per_input,
)
from l0eval.metrics.reconstruction import ReconstructionAccumulator
from l0eval.metrics.toy_recovery import feature_mixing, feature_recovery, latent_feature_cosines


def test_s_n_dec_takes_value_at_index_n_times_batch_of_descending_projections():
    # B = 2 inputs, h = 3 latents: 6 projections
    projections = torch.tensor([[6.0, 1.0, 4.0], [3.0, 5.0, 2.0]])
    # descending: 6 5 4 3 2 1 ; index n*B -> n=0: 6, n=1: 4, n=2: 2
    assert nth_largest_per_input(projections, [0, 1, 2]) == {0: 6.0, 1: 4.0, 2: 2.0}


def test_s_n_dec_rejects_n_outside_width():
    with pytest.raises(ValueError, match="0 <= n < h"):
        nth_largest_per_input(torch.zeros(2, 3), [3])


def test_s_n_dec_selection_paths_agree_with_a_full_sort():
    projections = torch.randn(997, 40, generator=torch.Generator().manual_seed(0))
    ordered = projections.flatten().sort(descending=True).values
    few = nth_largest_per_input(projections, [3, 30])  # kthvalue path
    many = nth_largest_per_input(projections, list(range(1, 40)))  # two-sided topk path
    assert few == {3: float(ordered[3 * 997]), 30: float(ordered[30 * 997])}
    assert many == {n: float(ordered[n * 997]) for n in range(1, 40)}


def test_s_n_dec_subtracts_b_dec_and_uses_raw_or_unit_rows():
    x = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    w_dec = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    b_dec = torch.tensor([1.0, 1.0])
    raw = decoder_projections(x, w_dec, b_dec)
    assert raw.tolist() == [[2.0, -1.0], [-2.0, 2.0]]
    unit = decoder_projections(x, w_dec, b_dec, normalize_decoder=True)
    assert unit.tolist() == [[1.0, -1.0], [-1.0, 2.0]]


def test_s_n_dec_accumulator_averages_batches():
    w_dec, b_dec = torch.eye(3), torch.zeros(3)
    acc = DecoderProjectionAccumulator(w_dec, b_dec, [1])
    acc.update(torch.tensor([[3.0, 2.0, 1.0]]))  # sorted 3 2 1 -> index 1 -> 2
    acc.update(torch.tensor([[9.0, 8.0, 7.0]]))  # -> 8
    assert acc.compute() == {1: 5.0}
    assert acc.batch_size == 1


def test_c_dec_is_zero_for_orthonormal_decoder_and_one_for_parallel():
    q, _ = torch.linalg.qr(torch.randn(64, 64, generator=torch.Generator().manual_seed(1)))
    assert decoder_cosine(q[:32]) == pytest.approx(0.0, abs=1e-6)
    assert mean_abs_pairwise_cosine(torch.tensor([[1.0, 0.0], [-2.0, 0.0], [3.0, 0.0]])) == pytest.approx(1.0)


def test_c_dec_known_value_and_blocking_does_not_change_it():
    # unit vectors at 0, 60 and 90 degrees: |cos| = 0.5 (0-60), 0 (0-90), sqrt(3)/2 (60-90)
    vectors = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2], [0.0, 1.0]])
    assert mean_abs_pairwise_cosine(vectors) == pytest.approx((0.5 + math.sqrt(3) / 2) / 3)
    random_rows = torch.randn(50, 8, generator=torch.Generator().manual_seed(2))
    assert mean_abs_pairwise_cosine(random_rows, block_rows=7) == pytest.approx(mean_abs_pairwise_cosine(random_rows))


def test_c_enc_uses_encoder_columns():
    w_enc = torch.tensor([[1.0, 1.0], [0.0, 1.0]])  # columns (1,0) and (1,1): cos = 1/sqrt(2)
    assert encoder_cosine(w_enc) == pytest.approx(1 / math.sqrt(2))


def test_reconstruction_metrics_stream_equals_one_shot():
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(1000, 6, generator=generator) + 2.0
    x_hat = x + 0.1 * torch.randn(1000, 6, generator=generator)
    acts = torch.relu(torch.randn(1000, 10, generator=generator))
    acts[:, 9] = 0  # a dead latent
    whole = ReconstructionAccumulator(10)
    whole.update(x, x_hat, acts)
    streamed = ReconstructionAccumulator(10)
    for chunk in range(0, 1000, 128):
        streamed.update(x[chunk:chunk + 128], x_hat[chunk:chunk + 128], acts[chunk:chunk + 128])
    a, b = whole.compute(), streamed.compute()
    assert a == pytest.approx(b)
    mse = (x_hat - x).square().sum(1).mean().item()
    assert a["mse"] == pytest.approx(mse, rel=1e-6)
    assert a["variance_explained"] == pytest.approx(1 - mse / x.square().sum(1).mean().item(), rel=1e-6)
    centred = (x - x.mean(0)).square().sum(1).mean().item()
    assert a["fvu"] == pytest.approx(mse / centred, rel=1e-5)
    assert a["l0"] == pytest.approx((acts > 0).sum(1).float().mean().item())
    assert a["dead_fraction"] == pytest.approx(0.1)


def test_reconstruction_rejects_nan_reconstructions():
    acc = ReconstructionAccumulator(2)
    with pytest.raises(FloatingPointError):
        acc.update(torch.zeros(2, 2), torch.tensor([[float("nan"), 0.0], [0.0, 0.0]]), torch.zeros(2, 2))


def test_feature_recovery_and_mixing():
    embedding = torch.eye(4)[:, :3]  # 3 true features in d=4
    assert feature_recovery(embedding.T.clone(), embedding) == pytest.approx(1.0)
    mixed = embedding.T.clone()
    mixed[1:] += 0.5 * embedding[:, 0]  # latents 1, 2 absorb +0.5 of feature 0
    assert feature_mixing(mixed, embedding, feature=0) > 0.4
    mixed_negative = embedding.T.clone()
    mixed_negative[1:] -= 0.5 * embedding[:, 0]
    assert feature_mixing(mixed_negative, embedding, feature=0) < -0.4
    assert latent_feature_cosines(mixed, embedding).shape == (3, 3)


def test_metric_registry_is_complete_and_consistent():
    from l0eval.metrics.registry import CONSOLE_COLUMNS, FORMULAS, METRICS, PLOT_PANELS, target_metrics

    assert set(CONSOLE_COLUMNS) | set(PLOT_PANELS) <= set(METRICS)
    assert all(METRICS[name].header for name in CONSOLE_COLUMNS)
    assert all(metric.formula in FORMULAS for metric in METRICS.values())
    # a target is judged by where its metric is best: it needs a direction
    assert target_metrics() and all(metric.higher_is_better is not None for metric in target_metrics())
