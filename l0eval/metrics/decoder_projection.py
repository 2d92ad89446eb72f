"""The nth decoder projection s_n^dec (Chanin & Garriga-Alonso 2025, nth_decoder_projection.py).

For a batch X [B, d] and decoder W_dec [h, d]:

    P = (X - b_dec) W_dec^T                 [B, h]    (no encoder, no b_enc, no ReLU)
    s_n^dec(X) = sort_desc(flatten(P))[n*B]  (0-based: the (n*B + 1)-th largest of the B*h values)

i.e. the threshold that on average n latents per input exceed. Over many batches the per-batch
values are averaged (the paper's LLM protocol). Decoder rows are used raw unless
``normalize_decoder`` is set (the paper's toys use raw rows, its LLM SAEs have unit rows).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

METRIC_VERSION = "s_n_dec/1: mean over batches of the (n*B+1)-th largest of (X - b_dec) W_dec^T"


def decoder_projections(x: torch.Tensor, w_dec: torch.Tensor, b_dec: torch.Tensor,
                        normalize_decoder: bool = False) -> torch.Tensor:
    """P = (x - b_dec) W_dec^T, [B, h]."""
    if normalize_decoder:
        w_dec = w_dec / w_dec.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return (x - b_dec) @ w_dec.T


def nth_largest_per_input(projections: torch.Tensor, n_values: Iterable[float]) -> dict[float, float]:
    """For each n, the value at 0-based index floor(n*B) of the descending flattened projections.

    Never sorts all B*h values. A few n: one ``kthvalue`` (linear-time selection) each, which suits an
    LLM batch (n = 12000 of h = 32768 sits 37% deep). Many n (a toy's whole 1..h-1 curve): one partial
    ``topk`` from whichever end of the distribution is nearer serves every n on that side.
    """
    batch, width = projections.shape
    flat = projections.reshape(-1).float()
    total = flat.numel()
    indices = {n: int(n * batch) for n in n_values}
    for n, index in indices.items():
        if not 0 <= index < total:
            raise ValueError(f"s_n^dec needs 0 <= n < h; got n={n} with h={width}")
    if len(indices) <= MAX_SELECTIONS:
        # the (index+1)-th largest is the (total - index)-th smallest
        return {n: float(flat.kthvalue(total - index).values) for n, index in indices.items()}
    values = {}
    upper = {n: index for n, index in indices.items() if index < total // 2}
    lower = {n: index for n, index in indices.items() if index >= total // 2}
    if upper:
        largest = flat.topk(max(upper.values()) + 1, sorted=True).values
        values.update({n: float(largest[index]) for n, index in upper.items()})
    if lower:
        smallest = flat.topk(max(total - index for index in lower.values()), largest=False, sorted=True).values
        values.update({n: float(smallest[total - index - 1]) for n, index in lower.items()})
    return values


# Up to this many n per batch, one kthvalue each beats a partial topk deep enough for all of them.
MAX_SELECTIONS = 4


class DecoderProjectionAccumulator:
    """Streams batches and averages s_n^dec over them, for several n at once."""

    def __init__(self, w_dec: torch.Tensor, b_dec: torch.Tensor, n_values: Iterable[float],
                 normalize_decoder: bool = False):
        self.w_dec = w_dec
        self.b_dec = b_dec
        self.n_values = list(n_values)
        self.normalize_decoder = normalize_decoder
        self.per_batch: dict[float, list[float]] = {n: [] for n in self.n_values}
        self.batch_size: int | None = None

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        projections = decoder_projections(x, self.w_dec, self.b_dec, self.normalize_decoder)
        for n, value in nth_largest_per_input(projections, self.n_values).items():
            self.per_batch[n].append(value)
        self.batch_size = x.shape[0] if self.batch_size is None else self.batch_size

    def compute(self) -> dict[float, float]:
        if not self.n_values or not self.per_batch[self.n_values[0]]:
            raise ValueError("no batches were seen")
        return {n: sum(values) / len(values) for n, values in self.per_batch.items()}
