"""A toy spec made concrete: feature directions, data samplers, batch streams and the ground-truth SAE."""

from __future__ import annotations

import dataclasses
from functools import cached_property

import torch
from sae_lens import BatchTopKTrainingSAE

from l0eval.activations.toy.data import StarCorrelation, ToyDataSampler, correlation_matrix, orthogonal_embedding
from l0eval.family.toy_spec import ToySpec
from l0eval.train.batched import batchtopk_sae


class ToyModel:
    """The synthetic model x = E f of a ``ToySpec`` (E is deterministic given ``embedding_seed``)."""

    def __init__(self, spec: ToySpec):
        self.spec = spec

    @cached_property
    def embedding(self) -> torch.Tensor:
        """E, [d_model, n_features], unit columns."""
        return orthogonal_embedding(self.spec.n_features, self.spec.d_model, self.spec.embedding_seed,
                                    self.spec.embedding_steps)

    @cached_property
    def correlation(self) -> torch.Tensor | None:
        return correlation_matrix(self.spec.n_features, self.spec.correlation)

    def sampler(self, rho: float | None = None) -> ToyDataSampler:
        """A sampler for this toy, or for the same toy with the star correlation set to ``rho``."""
        correlation = self.correlation
        if rho is not None:
            if not isinstance(self.spec.correlation, StarCorrelation):
                raise ValueError("rho can only be changed on a toy with a star correlation")
            star = dataclasses.replace(self.spec.correlation, rho=rho)
            correlation = correlation_matrix(self.spec.n_features, star)
        return ToyDataSampler(self.embedding, torch.tensor(self.spec.probabilities, dtype=torch.float32),
                              correlation, self.spec.magnitude_mean, self.spec.magnitude_std)


class ToyBatchSource:
    """Training batches from one or several data streams, each a sampler with its own seeded generator.

    Returns [B, d] for one stream (every member sees it) or [S, B, d] for S streams; the trainer gives
    stream s to the s-th run of M / S consecutive members (e.g. one stream per seed replicate, or per
    rho of the small toy).
    """

    def __init__(self, streams: list[tuple[ToyDataSampler, int]]):
        self.samplers = [sampler for sampler, _ in streams]
        self.generators = [torch.Generator().manual_seed(seed) for _, seed in streams]

    def next_batch(self, batch_size: int) -> torch.Tensor:
        batches = [sampler.sample(batch_size, generator)[0]
                   for sampler, generator in zip(self.samplers, self.generators)]
        return batches[0] if len(batches) == 1 else torch.stack(batches)

    def get_state(self) -> torch.Tensor:
        return torch.stack([generator.get_state() for generator in self.generators])

    def set_state(self, state: torch.Tensor) -> None:
        for generator, row in zip(self.generators, state.cpu()):
            generator.set_state(row.clone())


def ground_truth_weights(embedding: torch.Tensor, d_sae: int) -> dict[str, torch.Tensor]:
    """W_enc = E, W_dec = E^T, zero biases (extra latents beyond the true features start at zero)."""
    d_model, n_features = embedding.shape
    w_enc = torch.zeros(d_model, d_sae)
    w_enc[:, :n_features] = embedding
    return {"W_enc": w_enc, "b_enc": torch.zeros(d_sae), "W_dec": w_enc.T.clone().contiguous(),
            "b_dec": torch.zeros(d_model)}


def ground_truth_sae(model: ToyModel, k: float) -> BatchTopKTrainingSAE:
    """The paper's ground-truth SAE at any k (BatchTopK, encoder E, decoder E^T)."""
    return batchtopk_sae(ground_truth_weights(model.embedding, model.spec.n_features), k)
