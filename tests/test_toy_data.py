"""The paper's toy generator: exact reference numbers that need no training (paper-spec section 8)."""

import pytest
import torch

from l0eval.activations.toy.data import ToyDataSampler, random_correlation_matrix, star_correlation_matrix
from l0eval.activations.toy.model import ToyModel, ground_truth_sae
from l0eval.family.toy_spec import RandomCorrelation, StarCorrelation, linear_probabilities, toy_spec_by_name


@pytest.fixture(scope="module")
def main_toy():
    return ToyModel(toy_spec_by_name("toy").toy)


def test_main_toy_true_l0_is_sum_of_probabilities():
    spec = toy_spec_by_name("toy").toy
    assert spec.true_l0 == pytest.approx(10.9525, abs=1e-4)
    assert spec.probabilities[0] == pytest.approx(0.3881, abs=1e-6)
    assert spec.probabilities[-1] == pytest.approx(0.05, abs=1e-6)
    paper = [0.345 * (49 - i) / 50 + 0.05 for i in range(50)]
    assert list(spec.probabilities) == pytest.approx(paper, abs=1e-12)


def test_small_toy_true_l0():
    assert toy_spec_by_name("toy-small").toy.true_l0 == pytest.approx(2.0)


def test_seed_42_correlation_matrix_matches_paper():
    matrix = random_correlation_matrix(50, RandomCorrelation(seed=42, strength=(0.3, 0.9)))
    off_diagonal = matrix[~torch.eye(50, dtype=torch.bool)]
    assert off_diagonal.abs().mean().item() == pytest.approx(0.1335, abs=1e-3)
    assert off_diagonal.abs().max().item() == pytest.approx(0.4133, abs=1e-3)
    assert (off_diagonal > 0).float().mean().item() == pytest.approx(0.499, abs=0.01)
    assert torch.allclose(matrix, matrix.T, atol=1e-6)
    assert torch.linalg.eigvalsh(matrix.double()).min() > 0


def test_correlation_matrix_is_deterministic_and_leaves_global_random_alone():
    import random

    random.seed(7)
    before = random.random()
    random.seed(7)
    first = random_correlation_matrix(20, RandomCorrelation(seed=3))
    assert random.random() == before
    assert torch.equal(first, random_correlation_matrix(20, RandomCorrelation(seed=3)))
    assert not torch.equal(first, random_correlation_matrix(20, RandomCorrelation(seed=4)))


def test_star_correlation_and_semidefinite_edge_case():
    matrix = star_correlation_matrix(5, StarCorrelation(rho=0.4))
    assert matrix[0, 1:].tolist() == pytest.approx([0.4] * 4)
    assert matrix[1, 2] == 0
    # rho = 0.5 with 4 partners has a zero eigenvalue: sampling must still work
    singular = star_correlation_matrix(5, StarCorrelation(rho=0.5))
    sampler = ToyDataSampler(torch.eye(5), torch.full((5,), 0.4), singular)
    _, features = sampler.sample(20_000, torch.Generator().manual_seed(0))
    fires = (features > 0).float()
    assert fires.mean(0).tolist() == pytest.approx([0.4] * 5, abs=0.02)
    assert torch.corrcoef(fires.T)[0, 1] > 0.2


def test_empirical_true_l0_and_marginals(main_toy):
    x, features = main_toy.sampler().sample(100_000, torch.Generator().manual_seed(0))
    assert (features > 0).sum(1).float().mean().item() == pytest.approx(10.96, abs=0.03)
    probabilities = torch.tensor(main_toy.spec.probabilities)
    assert torch.allclose((features > 0).float().mean(0), probabilities, atol=0.01)
    active = features[features > 0]
    assert active.mean().item() == pytest.approx(1.0, abs=0.01)
    assert active.std().item() == pytest.approx(0.15, abs=0.01)
    assert torch.allclose(x, features @ main_toy.embedding.T)


def test_sampler_is_seeded(main_toy):
    sampler = main_toy.sampler()
    a, _ = sampler.sample(100, torch.Generator().manual_seed(5))
    b, _ = sampler.sample(100, torch.Generator().manual_seed(5))
    c, _ = sampler.sample(100, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_embedding_is_unit_and_nearly_orthogonal(main_toy):
    embedding = main_toy.embedding
    assert embedding.shape == (100, 50)
    assert torch.allclose(embedding.norm(dim=0), torch.ones(50), atol=1e-5)
    gram = embedding.T @ embedding - torch.eye(50)
    assert gram.abs().max() < 5e-3
    assert torch.equal(embedding, ToyModel(main_toy.spec).embedding)


@pytest.mark.parametrize("k, expected", [(5, 0.574), (9, 0.893), (10, 0.954), (11, 1.000)])
def test_ground_truth_sae_variance_explained(main_toy, k, expected):
    x, _ = main_toy.sampler().sample(100_000, torch.Generator().manual_seed(1))
    sae = ground_truth_sae(main_toy, k)
    with torch.no_grad():
        x_hat = sae(x)
    variance_explained = 1 - (x_hat - x).square().sum() / x.square().sum()
    assert variance_explained.item() == pytest.approx(expected, abs=0.01)


def test_linear_probabilities_endpoints():
    assert linear_probabilities(3, 0.5, 0.1) == pytest.approx((0.5, 0.3, 0.1))
    assert linear_probabilities(1, 0.5, 0.1) == (0.5,)
