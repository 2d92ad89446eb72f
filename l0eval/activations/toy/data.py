"""The paper's toy data generator (Chanin & Garriga-Alonso 2025, toy_models/get_training_batch.py).

Features fire through a Gaussian copula: z ~ N(0, C), feature i fires iff z_i > Phi^-1(1 - p_i).
A firing feature has magnitude ReLU(mean + N(0, std^2)); the input is x = E f with unit columns e_i.
Everything random takes an explicit seed or ``torch.Generator`` so a run is reproducible.
"""

from __future__ import annotations

import math
import random

import torch
from sae_lens.synthetic.feature_dictionary import orthogonalize_embeddings

from l0eval.errors import SpecError
from l0eval.family.toy_spec import Correlation, RandomCorrelation, StarCorrelation


def random_correlation_matrix(n_features: int, cfg: RandomCorrelation) -> torch.Tensor:
    """Exactly the paper's algorithm: Python ``random`` picks pairs, signs and strengths, then PSD repair.

    The paper's code draws from the global ``random`` module; we use a private ``random.Random`` with
    the same seed, which yields the same sequence without touching the caller's global state.
    """
    rng = random.Random(cfg.seed)
    matrix = torch.eye(n_features, dtype=torch.float32)
    pairs = [(i, j) for i in range(n_features) for j in range(i + 1, n_features)]
    n_correlated = len(pairs) - int(len(pairs) * cfg.sparsity)
    if n_correlated == 0:
        return matrix
    correlated = rng.sample(pairs, n_correlated)
    n_positive = int(n_correlated * cfg.positive_ratio)
    low, high = cfg.strength
    for index, (i, j) in enumerate(correlated):
        sign = 1.0 if index < n_positive else -1.0
        matrix[i, j] = matrix[j, i] = sign * rng.uniform(low, high)
    return repair_to_correlation_matrix(matrix)


def repair_to_correlation_matrix(matrix: torch.Tensor, min_eigenvalue: float = 1e-6) -> torch.Tensor:
    """Clamp eigenvalues to make ``matrix`` PSD, then rescale to a unit diagonal (the paper always applies this)."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    eigenvalues = eigenvalues.clamp(min=min_eigenvalue)
    repaired = eigenvectors @ torch.diag(eigenvalues) @ eigenvectors.T
    diag_sqrt = torch.sqrt(torch.diag(repaired))
    repaired = repaired / (diag_sqrt.unsqueeze(0) * diag_sqrt.unsqueeze(1))
    repaired.fill_diagonal_(1.0)
    return repaired


def star_correlation_matrix(n_features: int, cfg: StarCorrelation) -> torch.Tensor:
    """C[f, j] = C[j, f] = rho for j != f, identity elsewhere; repaired only if not PSD."""
    if not 0 <= cfg.feature < n_features:
        raise SpecError(f"correlation.feature={cfg.feature} is outside 0..{n_features - 1}")
    matrix = torch.eye(n_features, dtype=torch.float32)
    others = [j for j in range(n_features) if j != cfg.feature]
    matrix[cfg.feature, others] = cfg.rho
    matrix[others, cfg.feature] = cfg.rho
    if torch.linalg.eigvalsh(matrix).min() < -1e-6:
        matrix = repair_to_correlation_matrix(matrix)
    return matrix


def correlation_matrix(n_features: int, correlation: Correlation) -> torch.Tensor | None:
    """The correlation matrix a toy spec asks for, or None for independent firing."""
    if correlation is None:
        return None
    if isinstance(correlation, RandomCorrelation):
        return random_correlation_matrix(n_features, correlation)
    return star_correlation_matrix(n_features, correlation)


def orthogonal_embedding(n_features: int, d_model: int, seed: int, steps: int = 1000) -> torch.Tensor:
    """Unit feature directions E (d_model x n_features), pushed apart as in the paper's ``orthogonalize``.

    The loss (sum of squared off-diagonal dots + n * squared norm error, Adam lr 0.01) is the same as
    sae-lens's ``orthogonalize_embeddings``, so we call it; the paper set no seed, we do.
    """
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn(n_features, d_model, generator=generator)
    if steps == 0:
        return (start / start.norm(dim=1, keepdim=True)).T.contiguous()
    return orthogonalize_embeddings(start, num_steps=steps, lr=0.01).T.contiguous()


def covariance_factor(covariance: torch.Tensor) -> torch.Tensor:
    """A matrix L with L L^T = covariance: Cholesky, or an eigen square root when C is only semi-definite
    (the small toy at |rho| = 0.5 has a zero eigenvalue)."""
    factor, info = torch.linalg.cholesky_ex(covariance.double())
    if int(info) == 0:
        return factor.float()
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance.double())
    return (eigenvectors * eigenvalues.clamp(min=0).sqrt()).float()


class ToyDataSampler:
    """Draws toy inputs x = E f (and their feature activations f) from a seeded stream."""

    def __init__(
        self,
        embedding: torch.Tensor,
        probabilities: torch.Tensor,
        correlation: torch.Tensor | None,
        magnitude_mean: float = 1.0,
        magnitude_std: float = 0.15,
    ):
        self.embedding = embedding
        self.probabilities = probabilities
        self.magnitude_mean = magnitude_mean
        self.magnitude_std = magnitude_std
        # Phi^-1(1 - p) = sqrt(2) erfinv(1 - 2p): the same thresholds as scipy's norm.ppf in the paper.
        self.thresholds = math.sqrt(2.0) * torch.erfinv(1 - 2 * probabilities.double()).float()
        # z = eps @ L^T with L = chol(C) is how torch's MultivariateNormal samples; done by hand so
        # that a seeded generator drives it (MultivariateNormal.sample only uses the global RNG).
        self.cholesky = None if correlation is None else covariance_factor(correlation)

    @property
    def n_features(self) -> int:
        return self.probabilities.shape[0]

    def sample_features(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """Feature activations f, shape [batch_size, n_features]."""
        if self.cholesky is None:
            uniform = torch.rand(batch_size, self.n_features, generator=generator)
            fires = uniform < self.probabilities
        else:
            z = torch.randn(batch_size, self.n_features, generator=generator) @ self.cholesky.T
            fires = z > self.thresholds
        noise = torch.randn(batch_size, self.n_features, generator=generator) * self.magnitude_std
        return (fires * (self.magnitude_mean + noise)).relu()

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, f): inputs [batch_size, d_model] and the features that made them."""
        features = self.sample_features(batch_size, generator)
        return features @ self.embedding.T, features
