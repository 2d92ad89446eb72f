"""The batched family trainer: parity with sae-lens, equivalence to one-by-one training, resume, export."""

import os
import warnings

import pytest
import torch
from sae_lens.config import LoggingConfig, SAETrainerConfig
from sae_lens.saes.batchtopk_sae import BatchTopK
from sae_lens.training.sae_trainer import SAETrainer

from l0eval.atomic import temp_path
from l0eval.errors import L0EvalError
from l0eval.saes import store
from l0eval.train import batched
from l0eval.train.batched import (
    FamilyTrainer,
    TrainerConfig,
    batch_topk,
    batchtopk_sae,
    kth_largest_per_row,
    member_seed,
    sae_lens_init,
)

D_IN, D_SAE, BATCH, STEPS = 20, 32, 64, 40


class ListSource:
    """A replayable list of batches with the BatchSource interface (state = position)."""

    def __init__(self, batches):
        self.batches = batches
        self.position = 0

    def next_batch(self, batch_size):
        batch = self.batches[self.position]
        self.position += 1
        return batch

    def get_state(self):
        return torch.tensor(self.position)

    def set_state(self, state):
        self.position = int(state)


def make_batches(steps=STEPS, seed=0):
    generator = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.1, 2.0, D_IN)
    return [torch.randn(BATCH, D_IN, generator=generator) * scale for _ in range(steps)]


def config(**changes):
    return TrainerConfig(**{"d_in": D_IN, "d_sae": D_SAE, "samples": BATCH * STEPS, "batch_size": BATCH,
                            "dead_feature_window": 3, **changes})


@pytest.mark.parametrize("normalize_decoder", [False, True])
def test_matches_sae_lens_batchtopk_trainer_step_by_step(normalize_decoder):
    batches = make_batches()
    k_values = [0.1, 0.5, 3.0]  # few activations per batch over 32 latents: many go dead within 3 steps
    inits = [sae_lens_init(D_IN, D_SAE, member_seed(0, k)) for k in k_values]
    trainer = FamilyTrainer(config(normalize_decoder=normalize_decoder), inits, k_values, ListSource(batches))
    dead_counts = []
    trainer.fit(progress=False, record_losses=True,
                on_step=lambda step: dead_counts.append((trainer.steps_since_fired > 3).sum(-1).tolist()))
    counts = {count for step in dead_counts for count in step}
    # both aux-loss paths: a few dead latents (all used) and more than k_aux = d_in // 2 (top-k of them)
    assert any(0 < c <= D_IN // 2 for c in counts) and any(c > D_IN // 2 for c in counts), counts
    ours = torch.tensor(trainer.loss_history)
    for index, k in enumerate(k_values):
        reference = batchtopk_sae(inits[index], k, normalize_decoder)
        reference.train()
        reference_trainer = SAETrainer(
            cfg=SAETrainerConfig(total_training_samples=BATCH * STEPS, train_batch_size_samples=BATCH, lr=3e-4,
                                 lr_end=3e-4, dead_feature_window=3, logger=LoggingConfig(log_to_wandb=False)),
            sae=reference, data_provider=iter(batches))
        losses = []
        for batch in batches:
            losses.append(reference_trainer.step(batch).loss.item())
            reference_trainer.n_training_steps += 1
        assert torch.allclose(torch.tensor(losses), ours[:, index], rtol=1e-5, atol=1e-5)
        assert torch.allclose(reference.W_dec, trainer.model.W_dec[index], atol=1e-5)
        assert torch.allclose(reference.W_enc, trainer.model.W_enc[index], atol=1e-5)
        assert reference.topk_threshold.item() == pytest.approx(trainer.model.topk_threshold[index].item(), rel=1e-5)


def test_family_trained_together_equals_members_trained_alone(device):
    batches = make_batches()
    k_values = [1.0, 2.5, 4.0]
    inits = [sae_lens_init(D_IN, D_SAE, member_seed(3, k)) for k in k_values]
    together = FamilyTrainer(config(), inits, k_values, ListSource(batches), device=device).fit(progress=False)
    for index, k in enumerate(k_values):
        alone = FamilyTrainer(config(), [inits[index]], [k], ListSource(batches), device=device).fit(progress=False)
        assert torch.allclose(alone.W_dec[0], together.W_dec[index], atol=1e-5)
        assert torch.allclose(alone.b_dec[0], together.b_dec[index], atol=1e-5)


def test_killed_training_resumes_to_identical_weights(tmp_path):
    batches = make_batches()
    k_values = [1.5, 3.0]
    inits = [sae_lens_init(D_IN, D_SAE, member_seed(1, k)) for k in k_values]
    uninterrupted = FamilyTrainer(config(), inits, k_values, ListSource(batches)).fit(progress=False)

    class Killed(Exception):
        pass

    def kill_at_step_17(step):
        if step == 17:
            raise Killed

    first = FamilyTrainer(config(), inits, k_values, ListSource(batches), workdir=tmp_path, checkpoint_seconds=0)
    with pytest.raises(Killed):
        first.fit(progress=False, on_step=kill_at_step_17)
    resumed = FamilyTrainer(config(), inits, k_values, ListSource(batches), workdir=tmp_path)
    assert resumed.step == 0
    model = resumed.fit(progress=False)
    assert resumed.step == STEPS
    for name in ("W_enc", "W_dec", "b_enc", "b_dec", "topk_threshold"):
        assert torch.allclose(getattr(model, name), getattr(uninterrupted, name), atol=1e-6), name


def test_checkpoint_from_another_spec_is_refused(tmp_path):
    batches = make_batches()
    inits = [sae_lens_init(D_IN, D_SAE, 0)]
    FamilyTrainer(config(), inits, [2.0], ListSource(batches), workdir=tmp_path, fingerprint="a").fit(progress=False)
    with pytest.raises(Exception, match="another family spec"):
        FamilyTrainer(config(), inits, [2.0], ListSource(batches), workdir=tmp_path, fingerprint="b").fit(
            progress=False)


def test_corrupt_checkpoint_gives_a_clear_error(tmp_path):
    (tmp_path / FamilyTrainer.CHECKPOINT).write_bytes(b"not a checkpoint")
    trainer = FamilyTrainer(config(), [sae_lens_init(D_IN, D_SAE, 0)], [2.0], ListSource(make_batches()),
                            workdir=tmp_path)
    with pytest.raises(Exception, match="cannot read training checkpoint"):
        trainer.fit(progress=False)
    assert (tmp_path / FamilyTrainer.CHECKPOINT).read_bytes() == b"not a checkpoint"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_disk_at_a_checkpoint_is_one_error_naming_it_and_leaves_no_temp_file(tmp_path):
    checkpoint = tmp_path / FamilyTrainer.CHECKPOINT
    os.symlink("/dev/full", temp_path(checkpoint))  # the kernel answers ENOSPC there, as a full disk does
    trainer = FamilyTrainer(config(), [sae_lens_init(D_IN, D_SAE, 0)], [2.0], ListSource(make_batches()),
                            workdir=tmp_path, checkpoint_seconds=0)
    with pytest.raises(L0EvalError) as error:
        trainer.fit(progress=False)
    assert str(error.value) == f"cannot write {checkpoint}: No space left on device"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("k", [0.5, 1.8, 3.0])
def test_batch_topk_matches_sae_lens(k):
    acts = torch.randn(2, 50, 16, generator=torch.Generator().manual_seed(0)).relu()
    ours = batch_topk(acts, torch.tensor([k, k], dtype=torch.float64))
    for member in range(2):
        assert torch.equal(ours[member], BatchTopK(k)(acts[member]))
        assert (ours[member] != 0).sum() == int(k * 50)


def test_trained_member_round_trips_through_sae_lens_format(tmp_path):
    batches = make_batches()
    model = FamilyTrainer(config(), [sae_lens_init(D_IN, D_SAE, 0)], [2.0], ListSource(batches)).fit(progress=False)
    sae = batchtopk_sae(model.member_state_dict(0), 2.0, metadata={"l0eval_member": "k2_seed0"})
    sae.save_model(str(tmp_path / "member"))
    assert (tmp_path / "member" / "cfg.json").is_file()
    assert (tmp_path / "member" / "sae_weights.safetensors").is_file()
    loaded = store.load_member(tmp_path / "member")
    x = batches[0]
    with torch.no_grad():
        assert torch.equal(loaded(x), sae(x))
    assert loaded.cfg.k == 2.0
    assert loaded.cfg.metadata.l0eval_member == "k2_seed0"


def test_data_streams_feed_consecutive_member_groups():
    """[S, B, d] batches: member m trains on stream m // (M / S), exactly as if trained alone on it."""
    streams = [make_batches(seed=0), make_batches(seed=1)]
    stacked = [torch.stack(pair) for pair in zip(*streams)]
    k_values = [1.0, 3.0, 1.0, 3.0]
    inits = [sae_lens_init(D_IN, D_SAE, member_seed(i, k)) for i, k in enumerate(k_values)]
    together = FamilyTrainer(config(), inits, k_values, ListSource(stacked)).fit(progress=False)
    for index, k in enumerate(k_values):
        alone = FamilyTrainer(config(), [inits[index]], [k], ListSource(streams[index // 2])).fit(progress=False)
        assert torch.allclose(alone.W_dec[0], together.W_dec[index], atol=1e-5)
    with pytest.raises(ValueError, match="cannot be shared evenly"):
        FamilyTrainer(config(), inits[:3], k_values[:3], ListSource(stacked)).fit(progress=False)


def test_cutoff_search_with_a_guess_is_exact_inside_and_outside_the_guessed_interval():
    acts = torch.rand(4, 3000, generator=torch.Generator().manual_seed(2)).square()
    counts = torch.tensor([1, 700, 2999, 0])
    exact = torch.stack([row.topk(int(c)).values.min() if c else torch.tensor(torch.inf)
                         for row, c in zip(acts, counts)])
    near = exact * torch.tensor([1.01, 0.99, 1.0, 1.0])  # rows 0-1 bracketed by the guess
    far = torch.where(torch.isfinite(exact), exact * 3, 1.0)  # every row outside: each is bracketed by a sample
    for guess in (None, near, far):
        assert torch.equal(kth_largest_per_row(acts, counts, guess), exact)


def test_cutoff_search_is_exact_where_the_sampled_bracket_misses():
    """A row whose strided sample is unlike the rest (every 4th value large) falls through to a whole-row
    selection; rows of period 4 are sampled with a stride coprime to 4 and bracketed."""
    n = 4 * batched.SAMPLE_SIZE
    base = torch.rand(2, n, generator=torch.Generator().manual_seed(3))
    skewed = base.clone()
    skewed[:, :: n // batched.SAMPLE_SIZE] += 10.0  # exactly the values a stride of 4 samples
    counts = torch.tensor([n // 2, n // 3])
    for acts, period in ((skewed, 1), (skewed, 4), (base, 1)):
        exact = torch.stack([row.topk(int(c)).values.min() for row, c in zip(acts, counts)])
        assert torch.equal(kth_largest_per_row(acts, counts, period=period), exact)


def test_cutoff_search_narrows_wide_brackets_exactly_with_ties():
    """Toy-sized rows (1024 x 50) with guesses a few percent off, so brackets hold thousands of values and
    are narrowed by counting; rows rounded to a coarse grid put long runs of ties at the answer."""
    generator = torch.Generator().manual_seed(4)
    smooth = torch.rand(6, 51200, generator=generator).square()
    acts = torch.cat([smooth, (smooth * 50).round() / 50])
    counts = torch.tensor([1, 500, 5000, 20000, 40000, 51199] * 2)
    exact = torch.stack([row.topk(int(c)).values.min() for row, c in zip(acts, counts)])
    for guess in (exact * 0.97, exact, exact * 1.03, None):
        assert torch.equal(kth_largest_per_row(acts, counts, guess, period=50), exact)


def test_cutoff_search_on_a_long_row_with_an_open_ended_sampled_bracket():
    """An LLM-sized row (2**20 values, sampled every 256th) and a count near the top: the sampled bracket
    is open above and holds thousands of values, which are gathered as they are (no arithmetic on inf)."""
    acts = torch.rand(1, 2**20, generator=torch.Generator().manual_seed(5))
    counts = torch.tensor([1000])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(kth_largest_per_row(acts, counts), acts[0].topk(1000).values.min().reshape(1))


def test_dead_feature_window_is_at_most_a_quarter_of_the_budget():
    # sae-lens's default once the budget allows it
    assert config(samples=BATCH * 8000, dead_feature_window=None).window == 1000
    assert config(samples=BATCH * 2000, dead_feature_window=None).window == 500
    assert config(samples=BATCH * 2000, dead_feature_window=500).window == 500
    with pytest.raises(ValueError, match="train at least 2400 steps or set a window of at most 500"):
        config(samples=BATCH * 2000, dead_feature_window=600)


@pytest.mark.parametrize("inference", [False, True])
def test_a_saved_member_has_the_bytes_sae_lens_saves(tmp_path, inference):
    """store.save_member writes through l0eval's atomic writer what sae-lens's own savers write."""
    sae = batchtopk_sae(sae_lens_init(D_IN, D_SAE, 3), 2.0, metadata={"l0eval_member": "k2_seed3"})
    (sae.save_inference_model if inference else sae.save_model)(str(tmp_path / "sae-lens"))
    store.save_member(sae, tmp_path / "l0eval", inference=inference)
    for name in ("cfg.json", "sae_weights.safetensors"):
        assert (tmp_path / "l0eval" / name).read_bytes() == (tmp_path / "sae-lens" / name).read_bytes(), name
