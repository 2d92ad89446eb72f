"""Fill missing L0s of an LLM family: BatchTopK SAEs trained together on the family's cached activations.

The recipe is the paper's LLM one through the batched trainer: decoder treated as unit-norm
(sae-lens's ``rescale_acts_by_decoder_norm``), Adam 3e-4, batches of 4096 tokens. Each trained SAE is
saved as sae-lens saves a BatchTopK SAE for inference (JumpReLU with the learned global threshold,
decoder norms folded in) and registered as a "trained here" member of the family.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

import numpy as np
import torch
from sae_lens import BatchTopKTrainingSAE

from l0eval.activations.llm.activation_cache import ActivationCache
from l0eval.errors import L0EvalError
from l0eval.family.model import ActivationSource, Family
from l0eval.saes import store
from l0eval.train.batched import FamilyTrainer, TrainerConfig, member_seed, sae_lens_init
from l0eval.train.dead_window import SAE_LENS_DEAD_FEATURE_WINDOW


class CacheBatchSource:
    """Random token rows of an activation cache, drawn with a seeded generator (memory-mapped reads);
    with ``exclude_bos``, never a sequence's first position."""

    def __init__(self, cache: ActivationCache, seed: int, exclude_bos: bool = False):
        self.shards = list(cache.shards())
        self.offsets = np.cumsum([0] + [shard.shape[0] for shard in self.shards])
        self.generator = torch.Generator().manual_seed(seed)
        self.context = cache.key.context
        self.exclude_bos = exclude_bos

    def _draw_rows(self, batch_size: int) -> np.ndarray:
        if not self.exclude_bos:
            return torch.randint(int(self.offsets[-1]), (batch_size,), generator=self.generator).numpy()
        # draw among the non-BOS rows, then map to cache rows (every sequence occupies `context` rows)
        body = self.context - 1
        drawn = torch.randint(int(self.offsets[-1]) // self.context * body, (batch_size,),
                              generator=self.generator).numpy()
        return drawn // body * self.context + 1 + drawn % body

    def next_batch(self, batch_size: int) -> torch.Tensor:
        """``batch_size`` rows drawn with replacement, read shard by shard (order within a batch is irrelevant:
        the loss is a mean and BatchTopK ranks the whole batch)."""
        rows = np.sort(self._draw_rows(batch_size))
        shard_of_row = np.searchsorted(self.offsets, rows, side="right") - 1
        parts = [self.shards[shard][rows[shard_of_row == shard] - self.offsets[shard]]
                 for shard in np.unique(shard_of_row)]
        return torch.from_numpy(np.concatenate(parts).astype(np.float32))

    def get_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state.cpu())


@dataclass(frozen=True)
class LLMTrainingConfig:
    """`l0eval train`: which L0s to add to a family and how to train them."""

    k_values: tuple[float, ...]
    width: int = 0  # 0: the family's declared width
    samples: int = 2_000_000
    seed: int = 0
    batch_size: int = 4096
    lr: float = 3e-4
    device: str = "cpu"
    progress: bool = True


def train_missing_l0s(family: Family, source: ActivationSource, config: LLMTrainingConfig) -> list[dict]:
    """Train one BatchTopK SAE per k together on ``source`` (the family's activations), save them, and add them to
    the family's trained members. A source that excludes BOS trains (and calibrates) without it."""
    _check_architecture(family)
    width = config.width or family.members.declared_width()
    if not width:
        raise L0EvalError("the family file has no 'width': pass --width")
    _check_fits(family, config, width)  # before the model pass: a refusal after it would waste that work
    cache, exclude_bos = source.training_inputs(config.device, config.progress)
    return _train_on_cache(family.name, cache, config, width, exclude_bos)


# Architectures whose members `l0eval train` can add: it trains BatchTopK SAEs (sae-lens's recipe). A TopK
# family gets BatchTopK members, the per-batch form of its per-sample top-k (both keep k latents per token on
# average); JumpReLU, gated, standard (L1), p-anneal and Matryoshka families have other losses it cannot imitate.
TRAINABLE_ARCHITECTURES = ("batchtopk", "topk")


def _check_architecture(family: Family) -> None:
    architecture = getattr(family.members, "architecture", "")
    if architecture and architecture not in TRAINABLE_ARCHITECTURES:
        raise L0EvalError(f"family '{family.name}' is {architecture}: `l0eval train` trains BatchTopK SAEs and adds "
                          f"members only to {' or '.join(TRAINABLE_ARCHITECTURES)} families")


def _check_fits(family: Family, config: LLMTrainingConfig, width: int) -> None:
    """Every k fits the width, and the SAEs trained together fit this machine's memory."""
    from l0eval.memory_check import require, trained_saes_bytes

    if any(not 0 < k <= width for k in config.k_values):
        raise L0EvalError(f"every L0 must be in (0, width={width}]; got {list(config.k_values)}")
    d_in = getattr(family.members, "d_in", 0)  # declared by loaded-SAE families, the only ones `train` extends
    require(trained_saes_bytes(d_in, width, len(config.k_values), config.batch_size),
            f"training {len(config.k_values)} SAEs of width {width}", config.device)


def _train_on_cache(family_name: str, cache: ActivationCache, config: LLMTrainingConfig, width: int,
                    exclude_bos: bool) -> list[dict]:
    k_values, samples, seed = list(config.k_values), config.samples, config.seed
    batch_size, lr, device, progress = config.batch_size, config.lr, config.device, config.progress
    d_in = next(cache.shards()).shape[1]
    if samples < batch_size:
        raise L0EvalError(f"--samples {samples} is smaller than one batch ({batch_size})")
    trainer_config = TrainerConfig(d_in=d_in, d_sae=width, samples=samples, batch_size=batch_size, lr=lr,
                                   normalize_decoder=True)
    # the sequences after the training part are held out for evaluation (the family's `heldout_sequences`)
    heldout = cache.key.n_sequences - cache.n_sequences
    # unchanged for runs from before exclude_bos, held-out sequences and the window following the budget
    window = ([] if trainer_config.window == SAE_LENS_DEAD_FEATURE_WINDOW
              else [f"dead_feature_window={trainer_config.window}"])
    fingerprint = hashlib.sha256(json.dumps([str(cache.directory), k_values, width, samples, seed, batch_size, lr,
                                             *(["exclude_bos"] if exclude_bos else []), *window,
                                             *([f"heldout_sequences={heldout}"] if heldout else [])])
                                 .encode()).hexdigest()[:16]
    run_dir = store.trained_dir(family_name) / fingerprint
    # one `l0eval train` at a time per family: two would train the same SAEs twice and race on members.json
    with store.exclusive(store.trained_dir(family_name), f"the trained members of family '{family_name}'"):
        inits = [sae_lens_init(d_in, width, member_seed(seed, k)) for k in k_values]
        trainer = FamilyTrainer(trainer_config, inits, k_values, CacheBatchSource(cache, seed, exclude_bos),
                                device=device, workdir=run_dir / "train", fingerprint=fingerprint)
        started = time.monotonic()
        trained = trainer.fit(progress=progress)
        train_seconds = time.monotonic() - started
        metadata = {"l0eval_family": family_name, "l0eval_seed": seed, "hook_name": cache.key.hook,
                    "model_name": cache.key.model}
        saes = [trained.member_sae(index, metadata) for index in range(len(k_values))]
        calibrations = calibrate_thresholds(saes, CacheBatchSource(cache, calibration_seed(seed), exclude_bos),
                                            batch_size)
        added = []
        for k, sae, calibration in zip(k_values, saes, calibrations):
            folder = run_dir / f"k{k:g}"
            store.save_member(sae, folder, inference=True)
            added.append({"path": str(folder), "nominal_l0": k, "samples": trainer_config.steps * batch_size,
                          "seed": seed, "init_seed": member_seed(seed, k), "lr": lr, "batch_size": batch_size,
                          "width": width,
                          "trained_together_with": k_values, "train_seconds": train_seconds,
                          "resumed_from_step": trainer.resumed_from_step, "device": device, "exclude_bos": exclude_bos,
                          "heldout_sequences": heldout, "dead_feature_window": trainer_config.window,
                          "threshold_calibration": calibration})
        store.add_trained_members(family_name, added)
        (run_dir / "train" / FamilyTrainer.CHECKPOINT).unlink(missing_ok=True)
        return added


# sae-lens's BatchTopK keeps its inference threshold as an exponential moving average (rate 0.01, started
# at 0) of each training batch's smallest kept activation. After a short run the average still carries
# weight 0.99^steps on its zero start (0.29 after 122 steps), so the saved JumpReLU fires far more often
# than k (measured L0 up to 2x k on the SmolLM2 family). Before saving we set it to that average's fixed
# point: the same statistic, from sae-lens's own BatchTopK encoder, averaged over fresh batches.
CALIBRATION_BATCHES = 32


def calibration_seed(seed: int) -> int:
    """Calibration batches are drawn apart from the training stream (same cache, another generator)."""
    return seed + 1_000_003


@torch.no_grad()
def calibrate_thresholds(saes: list[BatchTopKTrainingSAE], source: CacheBatchSource, batch_size: int) -> list[dict]:
    """Set each SAE's ``topk_threshold`` to its mean smallest positive BatchTopK activation over the same
    fresh batches, read once for the whole family."""
    minima: list[list[float]] = [[] for _ in saes]
    for _ in range(CALIBRATION_BATCHES):
        batch = source.next_batch(batch_size)
        for sae, found in zip(saes, minima):
            feature_acts, _ = sae.encode_with_hidden_pre(batch.to(sae.W_enc.device, sae.W_enc.dtype))
            positive = feature_acts[feature_acts > 0]
            if positive.numel():
                found.append(float(positive.min()))
    return [_set_threshold(sae, found, batch_size) for sae, found in zip(saes, minima)]


def _set_threshold(sae: BatchTopKTrainingSAE, minima: list[float], batch_size: int) -> dict:
    if not minima:
        raise L0EvalError("threshold calibration found no active latent in any batch: the SAE is dead")
    moving_average = float(sae.topk_threshold)
    calibrated = sum(minima) / len(minima)
    sae.topk_threshold = torch.tensor(calibrated, dtype=torch.double, device=sae.topk_threshold.device)
    return {"batches": len(minima), "batch_size": batch_size, "moving_average_threshold": moving_average,
            "calibrated_threshold": calibrated}
