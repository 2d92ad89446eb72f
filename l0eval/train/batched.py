"""Train every L0 of a family at once: M BatchTopK SAEs as stacked tensors, one data batch per step.

Each member follows sae-lens's ``BatchTopKTrainingSAE`` + ``SAETrainer`` step exactly (checked in
tests/test_train.py against sae-lens itself): init with decoder rows at norm 0.1 and W_enc = W_dec^T,
BatchTopK over the whole batch (fractional k allowed), MSE summed over dimensions, the TopK aux
loss on latents dead for more than ``dead_feature_window`` steps, Adam, grad-norm clip 1.0 *per
member*, and the EMA ``topk_threshold``. Stacking turns M small matmuls into one batched matmul and
shares data generation, which is where the speed-up over one-by-one training comes from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from sae_lens import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
from torch import nn
from tqdm.auto import tqdm

from l0eval import atomic
from l0eval.errors import ResultsError


@dataclass(frozen=True)
class TrainerConfig:
    d_in: int
    d_sae: int
    samples: int
    batch_size: int = 1024
    lr: float = 3e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    dead_feature_window: int = 1000
    aux_loss_coefficient: float = 1.0
    topk_threshold_lr: float = 0.01
    # sae-lens's rescale_acts_by_decoder_norm: True trains as if decoder rows were unit norm (the
    # paper's LLM SAEs); False is plain SAELens 6.11 BatchTopK as used for the paper's toys.
    normalize_decoder: bool = False
    decoder_init_norm: float = 0.1

    @property
    def steps(self) -> int:
        return self.samples // self.batch_size


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

    @property
    def n_members(self) -> int:
        return self.W_enc.shape[0]

    def decoder_norms(self) -> torch.Tensor:
        return self.W_dec.norm(dim=-1)  # [M, h]

    def encode_with_hidden_pre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: a batch (see ``losses``) -> (BatchTopK activations, pre-activations), both [M, B, h]."""
        hidden_pre = self.pre_activations(x)
        if self.normalize_decoder:
            hidden_pre = hidden_pre * self.decoder_norms().unsqueeze(1)
        return batch_topk(hidden_pre.relu(), self.k), hidden_pre

    def _streams(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """x as [S, B, d] and the number of consecutive members G = M / S that read each stream."""
        x = x.unsqueeze(0) if x.dim() == 2 else x
        if self.n_members % x.shape[0]:
            raise ValueError(f"{x.shape[0]} data streams cannot be shared evenly by {self.n_members} members")
        return x, self.n_members // x.shape[0]

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """(x - b_dec) W_enc + b_enc per member, as one [B, d] x [d, G*h] matmul per stream with b_dec
        folded into the bias, instead of materialising M copies of x - b_dec."""
        x, group = self._streams(x)
        n_streams, batch, _ = x.shape
        _, d_in, d_sae = self.W_enc.shape
        bias = self.b_enc - torch.bmm(self.b_dec.unsqueeze(1), self.W_enc).squeeze(1)  # [M, h]
        weights = self.W_enc.view(n_streams, group, d_in, d_sae).permute(0, 2, 1, 3).reshape(
            n_streams, d_in, group * d_sae)
        pre = torch.baddbmm(bias.view(n_streams, 1, group * d_sae), x, weights)  # [S, B, G*h]
        return pre.view(n_streams, batch, group, d_sae).permute(0, 2, 1, 3).reshape(self.n_members, batch, d_sae)

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        if self.normalize_decoder:
            acts = acts / self.decoder_norms().unsqueeze(1)
        out = torch.bmm(acts, self.W_dec)
        return out + self.b_dec.unsqueeze(1)

    def losses(self, x: torch.Tensor, dead: torch.Tensor,
               aux_coefficient: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-member (mse, aux) losses [M] and the activations, as sae-lens's training_forward_pass.

        ``x`` is [B, d] (one batch for every member) or [S, B, d]: S data streams, each read by M / S
        consecutive members (S = M: a batch per member)."""
        acts, hidden_pre = self.encode_with_hidden_pre(x)
        recon = self.decode(acts)
        streams, group = self._streams(x)
        error = (recon.view(streams.shape[0], group, *recon.shape[1:]) - streams.unsqueeze(1)).view_as(recon)
        mse = error.square().sum(-1).mean(-1)
        aux = self._aux_loss(error.detach(), hidden_pre, dead) * aux_coefficient
        return mse, aux, acts

    def _aux_loss(self, error: torch.Tensor, hidden_pre: torch.Tensor, dead: torch.Tensor) -> torch.Tensor:
        """sae-lens 6.54's TopK aux loss per member: the top k_aux = d_in // 2 dead pre-activations
        reconstruct the residual x - x_hat (``-error``), without b_dec. (SAELens 6.11, used by the paper,
        added b_dec here; 6.54 follows the TopK paper's appendix A.2. We match the installed library.)

        Computed only for members that have dead latents. A member with at most k_aux dead latents
        uses all of them, so its top-k is just the dead mask; only members with more need a topk.
        """
        n_dead = dead.sum(-1)  # [M]
        members = (n_dead > 0).nonzero().flatten()
        losses = error.new_zeros(self.n_members)
        if members.numel() == 0:
            return losses
        k_aux = error.shape[-1] // 2
        dead, pre = dead[members], hidden_pre[members]
        aux_acts = torch.where(dead.unsqueeze(1), pre, 0.0)
        crowded = (n_dead[members] > k_aux).nonzero().flatten()
        if crowded.numel() > 0:
            masked = torch.where(dead[crowded].unsqueeze(1), pre[crowded], -torch.inf)
            top = masked.topk(k_aux, dim=-1, sorted=False)
            aux_acts = aux_acts.index_copy(0, crowded, torch.zeros_like(masked).scatter(-1, top.indices, top.values))
        w_dec = self.W_dec[members]
        if self.normalize_decoder:
            aux_acts = aux_acts / w_dec.norm(dim=-1).unsqueeze(1)
        scale = (n_dead[members].float() / k_aux).clamp(max=1.0)
        member_losses = scale * (torch.bmm(aux_acts, w_dec) + error[members]).square().sum(-1).mean(-1)
        return losses.index_copy(0, members, member_losses)

    @torch.no_grad()
    def update_topk_threshold(self, acts: torch.Tensor, lr: float) -> None:
        """EMA of each member's minimum positive activation (sae-lens's BatchTopK inference threshold)."""
        min_positive = torch.where(acts > 0, acts, torch.inf).flatten(1).amin(-1).double()
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
    (measure zero for continuous activations; tied zeros are zeros either way). Finding each member's
    cut-off with an unsorted ``topk`` of its own size and masking is 2-3x faster on CPU than one sorted
    ``topk`` at the largest size followed by a scatter.
    """
    n_members, batch, width = acts.shape
    counts = (k * batch).floor().long().tolist()  # int(k * B), as sae-lens
    flat = acts.reshape(n_members, batch * width)
    with torch.no_grad():
        cutoffs = torch.stack([
            row.topk(count, sorted=False).values.min() if count > 0 else row.new_tensor(torch.inf)
            for row, count in zip(flat, counts)
        ])
    return (flat * (flat >= cutoffs.unsqueeze(1))).view_as(acts)


def clip_grad_norm_per_member(module: StackedBatchTopK, max_norm: float) -> None:
    """torch's clip_grad_norm_ applied to each member's parameters separately."""
    params = [p for p in module.parameters() if p.grad is not None]
    squared = sum(p.grad.pow(2).flatten(1).sum(-1) for p in params)
    coef = (max_norm / (squared.sqrt() + 1e-6)).clamp(max=1.0)
    for p in params:
        p.grad.mul_(coef.view(-1, *([1] * (p.grad.dim() - 1))))


class FamilyTrainer:
    """Trains stacked members on one stream of batches, checkpointing to ``workdir`` so a killed run resumes."""

    CHECKPOINT = "checkpoint.pt"

    def __init__(self, cfg: TrainerConfig, inits: Sequence[dict[str, torch.Tensor]], k_values: Sequence[float],
                 source: BatchSource, device: str = "cpu", workdir: str | Path | None = None,
                 checkpoint_seconds: float = 60.0, fingerprint: str = ""):
        self.cfg = cfg
        self.device = torch.device(device)
        self.model = StackedBatchTopK(inits, k_values, cfg.normalize_decoder).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=cfg.adam_betas)
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
        dead = self.steps_since_fired > self.cfg.dead_feature_window
        mse, aux, acts = self.model.losses(x, dead, self.cfg.aux_loss_coefficient)
        with torch.no_grad():
            fired = (acts > 0).any(dim=1)
            self.steps_since_fired += 1
            self.steps_since_fired[fired] = 0
        loss = mse + aux
        loss.sum().backward()
        clip_grad_norm_per_member(self.model, self.cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.model.update_topk_threshold(acts.detach(), self.cfg.topk_threshold_lr)
        self.step += 1
        return loss.detach()

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
        with atomic.replacing(self.workdir / self.CHECKPOINT) as tmp:
            torch.save(self._checkpoint_state(), tmp)

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
