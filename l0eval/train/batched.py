"""Train every L0 of a family at once: M BatchTopK SAEs as stacked tensors, one data batch per step.

Each member follows sae-lens's ``BatchTopKTrainingSAE`` + ``SAETrainer`` step exactly (checked in
tests/test_train.py against sae-lens itself): init with decoder rows at norm 0.1 and W_enc = W_dec^T,
BatchTopK over the whole batch (fractional k allowed), MSE summed over dimensions, the TopK aux
loss on latents dead for more than ``dead_feature_window`` steps, Adam, grad-norm clip 1.0 *per
member*, and the EMA ``topk_threshold``. Stacking turns M small matmuls into one batched matmul and
shares data generation, which is where the speed-up over one-by-one training comes from.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from sae_lens import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
from torch import nn
from torch.profiler import record_function
from tqdm.auto import tqdm

from l0eval import atomic
from l0eval.errors import ResultsError
from l0eval.train.dead_window import dead_feature_window_for


@dataclass(frozen=True)
class TrainerConfig:
    d_in: int
    d_sae: int
    samples: int
    batch_size: int = 1024
    lr: float = 3e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    dead_feature_window: int | None = None  # None: ``dead_feature_window_for(steps)``
    aux_loss_coefficient: float = 1.0
    topk_threshold_lr: float = 0.01
    # sae-lens's rescale_acts_by_decoder_norm: True trains as if decoder rows were unit norm (the
    # paper's LLM SAEs); False is plain SAELens 6.11 BatchTopK as used for the paper's toys.
    normalize_decoder: bool = False
    decoder_init_norm: float = 0.1

    def __post_init__(self) -> None:
        dead_feature_window_for(self.steps, self.dead_feature_window)  # refuses a window the budget cannot pass

    @property
    def steps(self) -> int:
        return self.samples // self.batch_size

    @property
    def window(self) -> int:
        """Steps without firing after which a latent counts as dead and enters the aux loss."""
        return dead_feature_window_for(self.steps, self.dead_feature_window)


class BatchSource(Protocol):
    """Where training batches come from: [B, d_in] for all members, or [S, B, d_in] for S streams each
    read by M / S consecutive members."""

    def next_batch(self, batch_size: int) -> torch.Tensor: ...

    def get_state(self) -> torch.Tensor: ...

    def set_state(self, state: torch.Tensor) -> None: ...


def sae_lens_init(d_in: int, d_sae: int, seed: int, decoder_init_norm: float = 0.1) -> dict[str, torch.Tensor]:
    """sae-lens's TrainingSAE init, driven by a private seeded generator: kaiming-uniform decoder rows
    rescaled to ``decoder_init_norm``, W_enc = W_dec^T, zero biases."""
    generator = torch.Generator().manual_seed(seed)
    w_dec = torch.empty(d_sae, d_in)
    nn.init.kaiming_uniform_(w_dec, generator=generator)
    w_dec = w_dec / w_dec.norm(dim=-1, keepdim=True) * decoder_init_norm
    return {"W_enc": w_dec.T.clone().contiguous(), "b_enc": torch.zeros(d_sae), "W_dec": w_dec,
            "b_dec": torch.zeros(d_in)}


def member_seed(seed: int, k: float, extra: int = 0) -> int:
    """A stable init seed for (replicate seed, k): training one member alone reproduces it in a family."""
    return int(np.random.SeedSequence([seed, int(round(k * 1000)), extra]).generate_state(1)[0])


class StackedBatchTopK(nn.Module):
    """M BatchTopK training SAEs with parameters stacked on a leading member dimension."""

    def __init__(self, inits: Sequence[dict[str, torch.Tensor]], k_values: Sequence[float],
                 normalize_decoder: bool = False):
        super().__init__()
        if len(inits) != len(k_values):
            raise ValueError("one init per k is needed")
        self.W_enc = nn.Parameter(torch.stack([w["W_enc"] for w in inits]).float())
        self.b_enc = nn.Parameter(torch.stack([w["b_enc"] for w in inits]).float())
        self.W_dec = nn.Parameter(torch.stack([w["W_dec"] for w in inits]).float())
        self.b_dec = nn.Parameter(torch.stack([w["b_dec"] for w in inits]).float())
        self.register_buffer("k", torch.tensor([float(k) for k in k_values], dtype=torch.float64))
        # double precision as in sae-lens: the EMA update is numerically delicate
        self.register_buffer("topk_threshold", torch.zeros(len(k_values), dtype=torch.float64))
        self.normalize_decoder = normalize_decoder
        self.last_cutoffs: torch.Tensor | None = None  # the previous step's BatchTopK cut-offs: the next one's guess

    @property
    def n_members(self) -> int:
        return self.W_enc.shape[0]

    def decoder_norms(self) -> torch.Tensor:
        return self.W_dec.norm(dim=-1)  # [M, h]

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """(x - b_dec) W_enc + b_enc per member, [M, B, h]: b_dec folded into the bias, and each stream's
        [B, d] batch read by its G members through a stride-0 view, never copied M times."""
        streams, group = self._streams(x)
        bias = self.b_enc - torch.bmm(self.b_dec.unsqueeze(1), self.W_enc).squeeze(1)  # [M, h]
        out = bias.unsqueeze(1).expand(-1, streams.shape[1], -1).contiguous()
        for s, rows in enumerate(self._stream_members(group)):
            out[rows].baddbmm_(streams[s].expand(group, *streams.shape[1:]), self.W_enc[rows])
        return out

    def _streams(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """x as [S, B, d] and the number of consecutive members G = M / S that read each stream."""
        x = x.unsqueeze(0) if x.dim() == 2 else x
        if self.n_members % x.shape[0]:
            raise ValueError(f"{x.shape[0]} data streams cannot be shared evenly by {self.n_members} members")
        return x, self.n_members // x.shape[0]

    def _stream_members(self, group: int) -> list[slice]:
        return [slice(start, start + group) for start in range(0, self.n_members, group)]

    @torch.no_grad()
    def loss_and_gradients(self, x: torch.Tensor, dead: torch.Tensor, aux_coefficient: float) -> StepOutput:
        """One forward and backward pass of sae-lens's training loss for every member, gradients written
        to ``.grad``.

        The backward pass is written out by hand rather than taped by autograd: on a CPU the step is
        bound by passes over the [M, B, d] and [M, B, h] activations, and the hand-written pass
        touches each once, in place, where autograd keeps a dozen intermediates. The loss is
        sae-lens's: MSE summed over dimensions and averaged over the batch, plus the TopK aux loss
        (``_aux_loss_and_gradients``). With ``normalize_decoder`` the codes that multiply W_dec are
        acts / ||W_dec row||, i.e. the selected pre-activations, so the norms' gradient paths cancel
        exactly and only the selection depends on them (sae-lens's autograd computes both paths and
        they cancel to rounding)."""
        streams, group = self._streams(x)
        with record_function("encoder"):
            hidden_pre = self.pre_activations(x)  # [M, B, h]
        norms = self.decoder_norms().unsqueeze(1) if self.normalize_decoder else None
        scaled = hidden_pre * norms if norms is not None else hidden_pre
        with record_function("aux_loss"):
            aux_codes = self._aux_codes(hidden_pre, scaled, dead)  # before the ReLU below may overwrite hidden_pre
        with record_function("batch_topk"):
            acts, kept, cutoffs = batch_topk_with_cutoffs(scaled.relu_() if norms is None else scaled.relu(),
                                                          self.k, self.last_cutoffs)
            self.last_cutoffs = cutoffs
            codes = hidden_pre * kept if norms is not None else acts
        with record_function("decoder"):
            # x_hat, then x_hat - x in place (baddbmm's broadcast bias would cost a slow copy first)
            residual = torch.bmm(codes, self.W_dec).add_(self.b_dec.unsqueeze(1))
            for s, rows in enumerate(self._stream_members(group)):
                residual[rows] -= streams[s]
            mse = torch.linalg.vector_norm(residual, dim=-1).square().mean(-1)
        with record_function("backward"):
            two_over_batch = 2.0 / streams.shape[1]
            grad_w_dec = torch.bmm(codes.transpose(1, 2), residual).mul_(two_over_batch)
            grad_b_dec = residual.sum(1).mul_(two_over_batch)
            grad_pre = torch.bmm(residual, self.W_dec.transpose(1, 2) * two_over_batch).mul_(kept)
        with record_function("aux_loss"):
            aux = self._aux_loss_and_gradients(aux_codes, aux_coefficient, residual, grad_pre, grad_w_dec)
        with record_function("backward"):
            grad_pre_sum = grad_pre.sum(1)  # [M, h]
            grad_w_enc = torch.empty_like(self.W_enc)
            for s, rows in enumerate(self._stream_members(group)):
                torch.bmm(streams[s].T.expand(group, *streams.shape[:0:-1]), grad_pre[rows], out=grad_w_enc[rows])
            grad_w_enc -= self.b_dec.unsqueeze(2) * grad_pre_sum.unsqueeze(1)  # pre = (x - b_dec) W_enc + b_enc
            grad_b_dec -= torch.bmm(self.W_enc, grad_pre_sum.unsqueeze(2)).squeeze(2)
            for param, grad in ((self.W_enc, grad_w_enc), (self.b_enc, grad_pre_sum), (self.W_dec, grad_w_dec),
                                (self.b_dec, grad_b_dec)):
                param.grad = grad
        # acts >= 0, so a latent fired iff its column sums to more than 0 (a float sum reads faster than any())
        return StepOutput(mse, aux, acts, acts.sum(1) > 0, cutoffs)

    def _aux_codes(self, hidden_pre: torch.Tensor, scaled: torch.Tensor, dead: torch.Tensor) -> AuxCodes | None:
        """The TopK aux loss's inputs (sae-lens 6.54): per member with dead latents, its top
        k_aux = d_in // 2 dead (scaled) pre-activations, as codes for W_dec: chosen scaled pre-activations
        / decoder norms = chosen pre-activations (see ``loss_and_gradients``). None without dead latents.

        A member with at most k_aux dead latents uses all of them, so its top-k is just the dead mask;
        only members with more need a topk."""
        n_dead = dead.sum(-1)  # [M]
        members = (n_dead > 0).nonzero().flatten()
        if members.numel() == 0:
            return None
        k_aux = self.W_dec.shape[-1] // 2
        dead, n_dead = dead[members], n_dead[members]
        chosen = dead.to(hidden_pre.dtype).unsqueeze(1)  # [m, 1, h]: every dead latent, in every row
        crowded = (n_dead > k_aux).nonzero().flatten()
        if crowded.numel() > 0:
            masked = torch.where(dead[crowded].unsqueeze(1), scaled[members[crowded]], -torch.inf)
            top = masked.topk(k_aux, dim=-1, sorted=False).indices
            chosen = chosen.expand(-1, hidden_pre.shape[1], -1).clone()
            chosen[crowded] = torch.zeros_like(masked).scatter_(-1, top, 1.0)
        return AuxCodes(members, hidden_pre[members] * chosen, chosen, (n_dead.float() / k_aux).clamp(max=1.0))

    def _aux_loss_and_gradients(self, aux: AuxCodes | None, aux_coefficient: float, residual: torch.Tensor,
                                grad_pre: torch.Tensor, grad_w_dec: torch.Tensor) -> torch.Tensor:
        """The TopK aux loss per member [M], its gradients added to ``grad_pre`` and ``grad_w_dec``: the
        aux codes reconstruct the residual x - x_hat (``-residual``, detached) without b_dec. (SAELens 6.11,
        used by the paper, added b_dec here; 6.54 follows the TopK paper's appendix A.2. We match the
        installed library.)"""
        losses = residual.new_zeros(self.n_members)
        if aux is None:
            return losses
        w_dec = self.W_dec[aux.members]
        aux_residual = torch.bmm(aux.codes, w_dec).add_(residual[aux.members])
        scale = aux.scale * aux_coefficient
        losses[aux.members] = scale * torch.linalg.vector_norm(aux_residual, dim=-1).square().mean(-1)
        factor = (2.0 / residual.shape[1] * scale).view(-1, 1, 1)
        grad_w_dec[aux.members] += torch.bmm(aux.codes.transpose(1, 2), aux_residual) * factor
        grad_codes = torch.bmm(aux_residual, w_dec.transpose(1, 2) * factor)
        grad_pre[aux.members] += grad_codes.mul_(aux.chosen)
        return losses

    @torch.no_grad()
    def update_topk_threshold(self, step: StepOutput, lr: float) -> None:
        """EMA of each member's minimum positive activation (sae-lens's BatchTopK inference threshold).

        The minimum positive activation is the BatchTopK cut-off when that is positive (the cut-off is
        one of the kept values); only a member that kept every positive value (cut-off 0) needs a scan."""
        min_positive = step.cutoffs.clone()
        scan = (min_positive == 0).nonzero().flatten()
        if scan.numel() > 0:
            acts = step.acts[scan]
            min_positive[scan] = torch.where(acts > 0, acts, torch.inf).flatten(1).amin(-1)
        min_positive = min_positive.double()
        has_positive = torch.isfinite(min_positive)
        updated = (1 - lr) * self.topk_threshold + lr * min_positive
        self.topk_threshold.copy_(torch.where(has_positive, updated, self.topk_threshold))

    def member_sae(self, index: int, metadata: dict | None = None) -> BatchTopKTrainingSAE:
        """Member ``index`` as a sae-lens BatchTopK training SAE (on the CPU), ready to save."""
        return batchtopk_sae({name: t.cpu() for name, t in self.member_state_dict(index).items()},
                             float(self.k[index]), self.normalize_decoder, metadata)

    def member_state_dict(self, index: int) -> dict[str, torch.Tensor]:
        return {"W_enc": self.W_enc[index].detach().clone(), "b_enc": self.b_enc[index].detach().clone(),
                "W_dec": self.W_dec[index].detach().clone(), "b_dec": self.b_dec[index].detach().clone(),
                "topk_threshold": self.topk_threshold[index].clone()}


def batchtopk_sae(weights: dict[str, torch.Tensor], k: float, normalize_decoder: bool = False,
                  metadata: dict | None = None) -> BatchTopKTrainingSAE:
    """A sae-lens BatchTopK SAE holding ``weights``: ``encode`` applies BatchTopK(k) over the batch it gets."""
    d_in, d_sae = weights["W_enc"].shape
    cfg = BatchTopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=float(k),
                                     rescale_acts_by_decoder_norm=normalize_decoder)
    for key, value in (metadata or {}).items():
        setattr(cfg.metadata, key, value)
    sae = BatchTopKTrainingSAE(cfg)
    state = {name: tensor.float() for name, tensor in weights.items() if name != "topk_threshold"}
    state["topk_threshold"] = weights.get("topk_threshold", torch.tensor(0.0)).double()
    sae.load_state_dict(state)
    sae.eval()
    return sae


def batch_topk(acts: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """BatchTopK per member: keep member m's top int(k_m * B) entries of its whole [B, h] slice.

    Equals sae-lens's ``BatchTopK`` (topk + scatter) member by member, up to exact ties at the cut-off
    (measure zero for continuous activations; tied zeros are zeros either way)."""
    return batch_topk_with_cutoffs(acts, k)[0]


def batch_topk_with_cutoffs(acts: torch.Tensor, k: torch.Tensor, guess: torch.Tensor | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``batch_topk`` of non-negative ``acts`` [M, B, h], the kept entries as a float 0/1 mask (kept iff
    positive and at least the cut-off), and each member's cut-off, its int(k_m * B)-th largest activation
    [M] (inf when it keeps nothing). ``guess``, cut-offs close to the answer (the previous step's),
    speeds the search.

    The mask is float so that applying it is a multiplication: on a CPU, torch's boolean ``masked_fill_``
    and comparisons on [M, B, h] cost 5-20x a float multiply (measured: 3.7 ms vs 0.16 ms for 50 toy
    members), and numpy's comparison writes a float mask directly."""
    n_members, batch, width = acts.shape
    counts = (k * batch).floor().long().to(acts.device)  # int(k * B), as sae-lens
    flat = acts.reshape(n_members, batch * width)
    cutoffs = kth_largest_per_row(flat, counts, guess, period=width)
    keep = kept_mask(flat, cutoffs)
    return (flat * keep).view_as(acts), keep.view_as(acts), cutoffs


def kept_mask(flat: torch.Tensor, cutoffs: torch.Tensor) -> torch.Tensor:
    """1.0 where ``flat`` [M, n] is positive and at least its row's cut-off, else 0.0."""
    if flat.is_cuda:
        return ((flat >= cutoffs.unsqueeze(1)) & (flat > 0)).to(flat.dtype)
    values, bars = flat.detach().numpy(), cutoffs.numpy()
    keep = np.greater_equal(values, bars[:, None], out=np.empty_like(values), casting="unsafe")
    for row in np.flatnonzero(bars <= 0):  # a zero cut-off keeps every positive value, and only those
        np.greater(values[row], 0, out=keep[row], casting="unsafe")
    return torch.from_numpy(keep)


# Half-width of the interval around a guessed cut-off that ``kth_largest_per_row`` searches first, relative
# to the guess. Between two training steps a toy's cut-offs for k up to its true L0 move by about 1%
# (median), those of k past it (small cut-offs of latents with little left to explain) by 15-30%: those
# rows fall through to a sampled bracket. Of 5, 10, 20, 35 and 50% on the default toy early and late in
# training, 10% selected fastest (wider brackets hold more values than a few counts narrow cheaply).
GUESS_TOLERANCE = 0.1
# Sampled brackets: about this many values per row are sampled, and the bracket spans this many standard
# deviations of the sampled rank either side (a row outside both brackets is selected whole: exact, slower).
SAMPLE_SIZE = 4096
SAMPLE_SIGMAS = 4.0


@torch.no_grad()
def kth_largest_per_row(flat: torch.Tensor, counts: torch.Tensor, guess: torch.Tensor | None = None,
                        period: int = 1) -> torch.Tensor:
    """Row m's counts[m]-th largest value of non-negative ``flat`` [M, n] (inf where counts[m] = 0), exactly.

    On a GPU one sort of all rows serves. On a CPU a ``topk`` per row costs about 0.7 ms per member,
    numpy's introselect on the whole row 0.4 ms. Instead each row is bracketed: with ``above`` values
    over an interval [lo, hi] and at least counts values from lo up, the answer is the
    (counts - above)-th largest of the few values inside, selected alone. Counting is cheap (numpy's
    comparisons), gathering the values inside costs in proportion to how many there are, so the
    bracket is tried first around the ``guess`` (narrow), then around the matching rank of a strided
    sample of the row (wider, any row), and a row outside both is selected whole. ``period``: rows
    are [B, period] flattened; the sample's stride is coprime to it so that every column is sampled."""
    if flat.is_cuda:
        ordered = flat.sort(dim=1, descending=True).values
        picked = ordered.gather(1, (counts.clamp(min=1) - 1).unsqueeze(1)).squeeze(1)
        return torch.where(counts > 0, picked, torch.inf)
    values, wanted = flat.detach().numpy(), counts.cpu().numpy()
    cutoffs = np.full(wanted.shape, np.inf, dtype=values.dtype)
    rows = np.flatnonzero(wanted > 0)
    if guess is not None:
        g = guess.cpu().numpy()[rows].astype(values.dtype)
        rows = _select_in_brackets(values, wanted, rows, g * (1 - GUESS_TOLERANCE), g * (1 + GUESS_TOLERANCE),
                                   cutoffs)
    if rows.size > 0:
        rows = _select_in_brackets(values, wanted, rows, *_sampled_brackets(values, wanted, rows, period), cutoffs)
    for row in rows:  # the rank-th largest sits at ascending position size - rank
        position = values.shape[1] - wanted[row]
        cutoffs[row] = np.partition(values[row], position)[position]
    return torch.from_numpy(cutoffs).to(flat.device)


def _select_in_brackets(values: np.ndarray, wanted: np.ndarray, rows: np.ndarray, lo: np.ndarray,
                        hi: np.ndarray, cutoffs: np.ndarray) -> np.ndarray:
    """Writes ``cutoffs[row]`` for each of ``rows`` whose answer lies in its [lo, hi]; returns the others.
    (Per row, not on the [M, n] block: numpy counts a contiguous row about 5x faster than along an axis.)"""
    missed = []
    for row, low, high in zip(rows, lo, hi):
        line, rank = values[row], wanted[row]
        n_above, n_from_lo = np.count_nonzero(line > high), np.count_nonzero(line >= low)
        if not n_above < rank <= n_from_lo:
            missed.append(row)
            continue
        low, high, n_above = _narrow(line, rank, low, high, n_above, n_from_lo)
        inside = np.compress((line >= low) & (line <= high), line)
        position = inside.size - (rank - n_above)
        cutoffs[row] = np.partition(inside, position)[position]
    return np.asarray(missed, dtype=np.int64)


# ``_narrow`` stops once a bracket holds this many values: gathering them is then cheaper than another count.
NARROW_ENOUGH = 1024
NARROW_PROBES = 4


def _narrow(line: np.ndarray, rank: int, low: float, high: float, n_above: int,
            n_from_lo: int) -> tuple[float, float, int]:
    """A narrower bracket of the rank-th largest of ``line``, by counting alone: gathering the values
    inside a bracket costs about 15x a count per value gathered (the mask's branches), so a few counts
    that shrink a bracket holding 5% of the row to a few hundred values pay for themselves.

    Invariant: n_above = #(line > high) < rank <= n_from_lo = #(line >= low). Each probe guesses where
    the answer sits by interpolating its rank linearly between the ends, offset by a few standard
    deviations of that guess towards the end it probes, and keeps whichever side holds the answer."""
    for probe in range(NARROW_PROBES):
        inside = n_from_lo - n_above
        if inside <= NARROW_ENOUGH or not -np.inf < low < high < np.inf:  # a sampled bracket may be open-ended
            break
        from_top = rank - n_above  # the answer's rank among the values inside, 1 = largest
        offset = 4.0 * math.sqrt(from_top * (1 - from_top / inside)) + 8.0
        towards = from_top + offset if probe % 2 == 0 else from_top - offset  # below the guess, then above
        threshold = line.dtype.type(high - min(max(towards, 0.0), inside) / inside * (high - low))
        if not low < threshold <= high:
            continue
        n_from_threshold = np.count_nonzero(line >= threshold)
        if n_from_threshold >= rank:  # the answer is at least threshold
            low, n_from_lo = threshold, n_from_threshold
        else:  # fewer than rank values reach threshold: the answer is below it
            high, n_above = np.nextafter(threshold, line.dtype.type(-np.inf)), n_from_threshold
    return low, high, n_above


def _sampled_brackets(values: np.ndarray, wanted: np.ndarray, rows: np.ndarray,
                      period: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the sampled values SAMPLE_SIGMAS binomial standard deviations of rank above and below the
    sample rank that matches ``wanted``: the row's answer lies between them nearly always."""
    stride = max(1, values.shape[1] // SAMPLE_SIZE)
    while math.gcd(stride, period) != 1:
        stride += 1
    sample = values[rows, ::stride]
    size = sample.shape[1]
    expected = wanted[rows] * size / values.shape[1]  # the answer's rank (1 = largest) in the sample
    spread = SAMPLE_SIGMAS * np.sqrt(expected * (1 - expected / size)) + 2
    upper = np.floor(expected - spread).astype(np.int64)  # ranks of the bracket's ends in the sample
    lower = np.ceil(expected + spread).astype(np.int64)
    lo, hi = np.full(rows.size, -np.inf, values.dtype), np.full(rows.size, np.inf, values.dtype)
    for i, line in enumerate(sample):
        ends = [size - r for r in (lower[i], upper[i]) if 1 <= r <= size]  # ascending positions
        if ends:
            part = np.partition(line, ends)
            if 1 <= lower[i] <= size:
                lo[i] = part[size - lower[i]]
            if 1 <= upper[i] <= size:
                hi[i] = part[size - upper[i]]
    return lo, hi


@dataclass
class StepOutput:
    """One step's per-member losses [M], activations [M, B, h], which latents fired [M, h], BatchTopK cut-offs [M]."""

    mse: torch.Tensor
    aux: torch.Tensor
    acts: torch.Tensor
    fired: torch.Tensor
    cutoffs: torch.Tensor


@dataclass
class AuxCodes:
    """The aux loss's inputs for the members with dead latents: their indices [m], codes [m, B, h], which
    entries were chosen as a float 0/1 mask ([m, 1, h] when every dead latent is, [m, B, h] otherwise), and
    the loss scale min(n_dead / k_aux, 1) [m]."""

    members: torch.Tensor
    codes: torch.Tensor
    chosen: torch.Tensor
    scale: torch.Tensor


def clip_grad_norm_per_member(module: StackedBatchTopK, max_norm: float) -> None:
    """torch's clip_grad_norm_ applied to each member's parameters separately: one norm per member from
    the stacked gradients, one scale each."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    squared = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads]).square().sum(0)
    coef = (max_norm / (squared.sqrt() + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, [coef.view(-1, *([1] * (g.dim() - 1))) for g in grads])


class FamilyTrainer:
    """Trains stacked members on one stream of batches, checkpointing to ``workdir`` so a killed run resumes."""

    CHECKPOINT = "checkpoint.pt"

    def __init__(self, cfg: TrainerConfig, inits: Sequence[dict[str, torch.Tensor]], k_values: Sequence[float],
                 source: BatchSource, device: str = "cpu", workdir: str | Path | None = None,
                 checkpoint_seconds: float = 60.0, fingerprint: str = ""):
        self.cfg = cfg
        self.device = torch.device(device)
        self.model = StackedBatchTopK(inits, k_values, cfg.normalize_decoder).to(self.device)
        # fused: one kernel for all four stacked parameters (torch's default on CPU is a per-tensor loop)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=cfg.adam_betas, fused=True)
        self.steps_since_fired = torch.zeros(self.model.n_members, cfg.d_sae, device=self.device)
        self.source = source
        self.step = 0
        self.workdir = Path(workdir) if workdir is not None else None
        self.checkpoint_seconds = checkpoint_seconds
        self.fingerprint = fingerprint
        self.loss_history: list[list[float]] = []
        self.resumed_from_step = 0

    def train_step(self, batch: torch.Tensor) -> torch.Tensor:
        """One optimisation step for all members; returns the per-member total loss [M]."""
        x = batch.to(self.device, torch.float32)
        dead = self.steps_since_fired > self.cfg.window
        out = self.model.loss_and_gradients(x, dead, self.cfg.aux_loss_coefficient)
        with record_function("dead_tracking"):
            self.steps_since_fired += 1
            self.steps_since_fired.masked_fill_(out.fired, 0)
        with record_function("clipping"):
            clip_grad_norm_per_member(self.model, self.cfg.grad_clip)
        with record_function("adam"):
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        with record_function("threshold_update"):
            self.model.update_topk_threshold(out, self.cfg.topk_threshold_lr)
        self.step += 1
        return out.mse + out.aux

    def fit(self, progress: bool = True, record_losses: bool = False,
            on_step: Callable[[int], None] | None = None) -> StackedBatchTopK:
        """Train to ``cfg.steps`` steps, resuming from ``workdir``'s checkpoint when there is one."""
        self._maybe_resume()
        total = self.cfg.steps * self.cfg.batch_size
        bar = tqdm(total=total, initial=self.step * self.cfg.batch_size, unit="sample", unit_scale=True,
                   desc=f"training {self.model.n_members} SAEs", disable=not progress, smoothing=0.1)
        last_save = time.monotonic()
        while self.step < self.cfg.steps:
            losses = self.train_step(self.source.next_batch(self.cfg.batch_size))
            if record_losses:
                self.loss_history.append(losses.cpu().tolist())
            bar.update(self.cfg.batch_size)
            if on_step is not None:
                on_step(self.step)
            if self.workdir is not None and time.monotonic() - last_save > self.checkpoint_seconds:
                self.save_checkpoint()
                last_save = time.monotonic()
        bar.close()
        if self.workdir is not None:
            self.save_checkpoint()
        return self.model

    # -- checkpoints -----------------------------------------------------------------------------

    def _checkpoint_state(self) -> dict:
        return {"step": self.step, "fingerprint": self.fingerprint, "config": repr(asdict(self.cfg)),
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "steps_since_fired": self.steps_since_fired, "source": self.source.get_state()}

    def save_checkpoint(self) -> None:
        """Atomic write: a kill during the save leaves the previous checkpoint intact."""
        assert self.workdir is not None
        self.workdir.mkdir(parents=True, exist_ok=True)
        atomic.write_torch(self.workdir / self.CHECKPOINT, self._checkpoint_state())

    def _maybe_resume(self) -> None:
        if self.workdir is None or not (self.workdir / self.CHECKPOINT).is_file():
            return
        path = self.workdir / self.CHECKPOINT
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # a truncated or foreign file: say which, keep it for inspection
            raise ResultsError(f"cannot read training checkpoint {path}: {exc}; delete it to start over") from exc
        if state.get("fingerprint") != self.fingerprint or state.get("config") != repr(asdict(self.cfg)):
            raise ResultsError(f"training checkpoint {path} was made for another family spec; delete it to "
                               "start over")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps_since_fired = state["steps_since_fired"].to(self.device)
        self.source.set_state(state["source"])
        self.step = self.resumed_from_step = int(state["step"])
