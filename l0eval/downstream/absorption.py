"""SAEBench's first-letter feature absorption (Chanin et al.; absorption fraction by D. Till), run through
sae-bench's own functions with our model injected.

Protocol (sae-bench ``evals/absorption``, its thresholds unchanged): a 26-way ground-truth logistic probe on
the residual stream reads the first letter of single-token words in 10-shot prompts "{word} has the first
letter:"; per SAE, k-sparse probes (k = 1..10) on the latents find each letter's main latents (k grows while
F1 gains > 0.03); on test words the probe gets right, the absorption fraction and full absorption measure how
much of the probe projection other latents carry when the main latents fail. Per letter, then the mean over
letters whose ground-truth probe F1 exceeds 0.6 (at least 20 such letters).

Deviations, each because sae-bench's ``run_eval`` cannot run offline or on this model:
- the model: sae-bench calls ``HookedTransformer`` (``run_with_cache``, ``to_tokens``, ``tokenizer``,
  ``cfg.model_name``/``cfg.d_model``). TransformerLens has no offline SmolLM2, so ``HookedModel`` supplies
  exactly those members on top of our transformers model (``l0eval.activations.llm.hooks``);
- the hook: sae-bench reads ``blocks.{layer}.hook_resid_post``; an SAE at ``blocks.L.hook_resid_pre`` gets
  layer L-1, whose output is the same tensor (sae-bench would read the wrong activations there);
- caches: sae-bench keeps probes and per-SAE results inside its installed package, keyed by names (stale
  entries gave wrong results, SAEBench #68). The ground-truth probe lives under ``$L0EVAL_CACHE`` keyed by
  model, weights, layer and setting; per-SAE results go to a fresh temporary folder and are recomputed;
- the seed: sae-bench stores ``random_seed`` but never applies it; we seed ``random``, numpy and torch before
  the probe data, each SAE's k-sparse probes and each SAE's absorption prompts;
- the word order: sae-bench lists words by iterating ``tokenizer.vocab``, which a fast tokenizer builds from a
  Rust hash map in an order that changes from one process to the next, so its seeded ``random.sample`` drew
  other ICL examples and probe splits in every process (absorption fraction .38 vs .31 for the same SAE);
  ``HookedModel`` hands it the tokenizer with ``vocab`` in token-id order;
- too few letters: sae-bench ``break``s and writes nothing (for that SAE and every later one); we record the
  SAE's metrics as null with the reason and go on;
- the reduced CPU setting samples ``words`` of the model's single-token alphabetic words instead of all of
  them (all 26 letters stay: sae-bench hard-codes them) and precomputes the SAE activations of the probe
  training words (sae-bench's ``precalc_k_sparse_probe_sae_acts``).
"""

from __future__ import annotations

import hashlib
import json
import random
import statistics
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import torch

from l0eval.activations.llm.hooks import parse_hook, residual_activations
from l0eval.downstream import seed_everything
from l0eval.errors import L0EvalError
from l0eval.saes import store


class AbsorptionUnavailable(L0EvalError):
    """The model or hook cannot carry SAEBench's first-letter task."""

PROMPT_TEMPLATE = "{word} has the first letter:"
PROMPT_TOKEN_POS = -6  # sae-bench's default: " has the first letter:" is 5 tokens after the word
PROBE_BATCH_SIZE, PROBE_EPOCHS, PROBE_LR = 64, 50, 1e-2  # sae-bench's train_and_save_probes defaults


@dataclass(frozen=True)
class AbsorptionSetting:
    """``words`` None = every single-token alphabetic word of the vocabulary (SAEBench); else a seeded sample."""

    words: int | None = None
    min_gt_probe_f1: float = 0.6
    min_letters: int = 20
    max_k_value: int = 10
    f1_jump_threshold: float = 0.03
    llm_batch_size: int = 10
    precalc_sae_acts: bool = False

    @property
    def name(self) -> str:
        return "full" if self.words is None else f"reduced ({self.words} words)"


FULL = AbsorptionSetting()
# On a shared CPU the 10-shot prompts run at a few hundred tokens/s: 800 words (~85 tokens each) is minutes.
# With ~640 training words the ground-truth probe of a 135M model is weaker than SAEBench's (all ~30k words,
# models >= 2B), so letters count from F1 0.3, the threshold SAEBench's own Pythia-70M acceptance test uses.
CPU_REDUCED = AbsorptionSetting(words=800, min_gt_probe_f1=0.3, precalc_sae_acts=True)


class IdOrderedVocab:
    """A tokenizer whose ``vocab`` is in token-id order; everything else is the wrapped tokenizer's own."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self.vocab = dict(sorted(tokenizer.get_vocab().items(), key=lambda item: item[1]))

    def __getattr__(self, name: str):
        return getattr(self._tokenizer, name)

    def __call__(self, *args, **kwargs):
        return self._tokenizer(*args, **kwargs)

    def __len__(self) -> int:
        return len(self._tokenizer)


class HookedModel:
    """The members of TransformerLens's ``HookedTransformer`` that sae-bench's absorption code calls, on a
    transformers causal LM: ``tokenizer``, ``cfg.model_name``, ``cfg.d_model``, ``to_tokens`` (BOS first, as
    TransformerLens does) and ``run_with_cache(prompts, names_filter=[resid hooks])``.

    sae-bench only ever reads one negative position of the cached residual stream (``prompt_token_pos``),
    so only the last ``keep_last`` positions are returned; with ``memoize`` they are kept per prompt, and
    every SAE of the family reuses the model pass on the same (seeded) prompts.
    """

    def __init__(self, loaded, model_name: str, device: str, keep_last: int):
        self.model, self.device, self.keep_last = loaded.model, device, keep_last
        self.tokenizer = IdOrderedVocab(loaded.tokenizer)  # sae-bench's word lists in a fixed order
        self.cfg = SimpleNamespace(model_name=model_name, d_model=loaded.model.config.hidden_size, device=device)
        self.memoize = False
        self._memo: dict[tuple[str, str], torch.Tensor] = {}

    def to_tokens(self, text: str) -> torch.Tensor:
        return torch.tensor([self._ids(text)], device=self.device)

    def _ids(self, text: str) -> list[int]:
        bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        return bos + self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @torch.no_grad()
    def run_with_cache(self, prompts: list[str], names_filter: list[str]) -> tuple[None, dict[str, torch.Tensor]]:
        return None, {hook: self._tails(list(prompts), hook) for hook in names_filter}

    def _tails(self, prompts: list[str], hook: str) -> torch.Tensor:
        missing = [p for p in dict.fromkeys(prompts) if (p, hook) not in self._memo]
        computed = dict(zip(missing, self._compute(missing, hook))) if missing else {}
        if self.memoize:
            self._memo.update({(p, hook): tail for p, tail in computed.items()})
        return torch.stack([computed[p] if p in computed else self._memo[(p, hook)] for p in prompts]).to(self.device)

    def _compute(self, prompts: list[str], hook: str) -> list[torch.Tensor]:
        sequences = [self._ids(p) for p in prompts]
        longest = max(map(len, sequences))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(sequences), longest), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, seq in enumerate(sequences):  # right padding, as TransformerLens pads
            ids[row, :len(seq)], mask[row, :len(seq)] = torch.tensor(seq), 1
        acts = residual_activations(self.model, ids.to(self.device), hook, attention_mask=mask.to(self.device))
        return list(acts[:, -self.keep_last:].float().cpu())


def resid_post_layer(hook: str) -> int:
    """The layer whose ``hook_resid_post`` is the SAE's input (sae-bench reads resid_post only)."""
    point = parse_hook(hook)
    if point.position == "post":
        return point.layer
    if point.layer == 0:
        raise AbsorptionUnavailable("absorption needs a residual stream after a layer; blocks.0.hook_resid_pre is "
                                    "the embeddings")
    return point.layer - 1


def run_absorption(loaded, hook: str, saes: list[tuple[str, object]], setting: AbsorptionSetting, seed: int,
                   device: str = "cpu") -> list[dict]:
    """Per SAE: {"absorption_fraction", "full_absorption", ...flat, "saebench": SAEBench-schema output}."""
    layer = resid_post_layer(hook)
    model = HookedModel(loaded, _model_tag(loaded, layer, setting, seed), device, keep_last=-PROMPT_TOKEN_POS)
    probes_dir = store.cache_root() / "absorption" / model.cfg.model_name / "probes"
    with torch.enable_grad():  # sae-bench trains its probes with autograd
        _ensure_ground_truth_probe(model, layer, probes_dir, setting, seed, device)
        model.memoize = True
        return [_absorption_of(model, name, sae, layer, probes_dir, setting, seed, device) for name, sae in saes]


def _model_tag(loaded, layer: int, setting: AbsorptionSetting, seed: int) -> str:
    """sae-bench keys its ground-truth probe by ``model.cfg.model_name``: make that name carry everything the
    probe depends on."""
    key = [loaded.name, loaded.revision, layer, setting.words, seed, PROMPT_TEMPLATE, PROMPT_TOKEN_POS]
    return f"{loaded.name.replace('/', '--')}-{hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12]}"


def _ensure_ground_truth_probe(model: HookedModel, layer: int, probes_dir: Path, setting: AbsorptionSetting,
                               seed: int, device: str) -> None:
    from sae_bench.evals.absorption.common import create_and_train_probe
    from sae_bench.evals.absorption.prompting import first_letter_formatter
    from sae_bench.evals.absorption.vocab import get_alpha_tokens

    if not (probes_dir / model.cfg.model_name / f"layer_{layer}" / "probe.pth").is_file():
        seed_everything(seed)
        vocab = get_alpha_tokens(model.tokenizer)
        _check_letters(vocab)
        if setting.words is not None:
            vocab = _sample_per_letter(vocab, setting.words, seed)
        create_and_train_probe(model=model, formatter=first_letter_formatter(),
                               hook_point=f"blocks.{layer}.hook_resid_post", probes_dir=probes_dir, vocab=vocab,
                               batch_size=PROBE_BATCH_SIZE, num_epochs=PROBE_EPOCHS, lr=PROBE_LR,
                               device=torch.device(device), base_template=PROMPT_TEMPLATE, pos_idx=PROMPT_TOKEN_POS)


MIN_WORDS_PER_LETTER = 5  # sae-bench's random 80/20 split must leave every letter in the probe's training words


def _check_letters(vocab: list[str]) -> None:
    counts = {letter: 0 for letter in "abcdefghijklmnopqrstuvwxyz"}
    for word in set(vocab):
        counts[word.strip()[0].lower()] = counts.get(word.strip()[0].lower(), 0) + 1
    short = [letter for letter, count in counts.items() if count < MIN_WORDS_PER_LETTER]
    if short:
        raise AbsorptionUnavailable(f"absorption needs at least {MIN_WORDS_PER_LETTER} single-token alphabetic "
                                    f"words per first letter; the tokenizer has fewer for {', '.join(short)}")


def _sample_per_letter(vocab: list[str], words: int, seed: int) -> list[str]:
    """A seeded sample of ``words`` words, equally many per first letter where the vocabulary has them (a plain
    sample can leave a rare letter out of the probe's training split, which sae-bench cannot handle)."""
    rng = random.Random(seed)
    by_letter: dict[str, list[str]] = {}
    for word in sorted(set(vocab)):
        by_letter.setdefault(word.strip()[0].lower(), []).append(word)
    per_letter = -(-words // len(by_letter))
    return [word for letter in sorted(by_letter)
            for word in rng.sample(by_letter[letter], min(per_letter, len(by_letter[letter])))]


def _absorption_of(model: HookedModel, name: str, sae, layer: int, probes_dir: Path, setting: AbsorptionSetting,
                   seed: int, device: str) -> dict:
    from sae_bench.evals.absorption.feature_absorption import run_feature_absortion_experiment
    from sae_bench.evals.absorption.k_sparse_probing import run_k_sparse_probing_experiment
    from sae_bench.evals.absorption.main import _aggregate_results_df

    common = {"model": model, "sae": sae, "layer": layer, "sae_name": name, "max_k_value": setting.max_k_value,
              "prompt_template": PROMPT_TEMPLATE, "prompt_token_pos": PROMPT_TOKEN_POS, "device": device,
              "probes_dir": probes_dir, "force": True}
    with tempfile.TemporaryDirectory(prefix="l0eval-absorption-") as work:
        seed_everything(seed)
        k_sparse = run_k_sparse_probing_experiment(
            **common, experiment_dir=Path(work) / "k_sparse_probing", f1_jump_threshold=setting.f1_jump_threshold,
            precalc_k_sparse_probe_sae_acts=setting.precalc_sae_acts, verbose=False)
        letter_f1 = dict(zip(k_sparse["letter"], k_sparse["f1_probe"].astype(float)))
        passing = [letter for letter, f1 in letter_f1.items() if f1 > setting.min_gt_probe_f1]
        if len(passing) < setting.min_letters:
            return {"absorption_fraction": None, "full_absorption": None, "ground_truth_probe_f1": letter_f1,
                    "reason": f"only {len(passing)} letters have a ground-truth probe F1 above "
                              f"{setting.min_gt_probe_f1} (SAEBench needs {setting.min_letters})"}
        seed_everything(seed)
        raw = run_feature_absortion_experiment(
            **common, experiment_dir=Path(work) / "feature_absorption",
            sparse_probing_experiment_dir=Path(work) / "k_sparse_probing",
            feature_split_f1_jump_threshold=setting.f1_jump_threshold, batch_size=setting.llm_batch_size)
    output = _saebench_output(_aggregate_results_df(raw), passing, model, name, sae, setting, seed)
    mean = output["eval_result_metrics"]["mean"]
    return {"absorption_fraction": mean["mean_absorption_fraction_score"],
            "full_absorption": mean["mean_full_absorption_score"],
            "absorption_num_split_features": mean["mean_num_split_features"],
            "ground_truth_probe_f1": letter_f1, "saebench": output}


def _saebench_output(aggregated, passing: list[str], model: HookedModel, name: str, sae,
                     setting: AbsorptionSetting, seed: int) -> dict:
    """sae-bench's ``AbsorptionEvalOutput`` built as its ``run_eval`` builds it (same filter, same fields)."""
    from sae_bench.evals.absorption.eval_config import AbsorptionEvalConfig
    from sae_bench.evals.absorption.eval_output import (
        AbsorptionEvalOutput,
        AbsorptionMeanMetrics,
        AbsorptionMetricCategories,
    )
    from sae_bench.sae_bench_utils import get_eval_uuid, get_sae_bench_version, get_sae_lens_version

    rows = [row for _, row in aggregated.iterrows() if row["letter"] in passing]
    fractions = [float(row["mean_absorption_fraction"]) for row in rows]
    rates = [float(row["full_absorption_rate"]) for row in rows]
    splits = [int(row["num_split_feats"]) for row in rows]
    config = AbsorptionEvalConfig(model_name=model.cfg.model_name, random_seed=seed,
                                  max_k_value=setting.max_k_value, f1_jump_threshold=setting.f1_jump_threshold,
                                  prompt_template=PROMPT_TEMPLATE, prompt_token_pos=PROMPT_TOKEN_POS,
                                  llm_batch_size=setting.llm_batch_size, llm_dtype="float32",
                                  min_GT_probe_f1=setting.min_gt_probe_f1, min_feats_for_eval=setting.min_letters,
                                  precalc_k_sparse_probe_sae_acts=setting.precalc_sae_acts)
    output = AbsorptionEvalOutput(
        eval_config=config, eval_id=get_eval_uuid(), datetime_epoch_millis=int(datetime.now().timestamp() * 1000),
        eval_result_metrics=AbsorptionMetricCategories(mean=AbsorptionMeanMetrics(
            mean_absorption_fraction_score=statistics.mean(fractions),
            mean_full_absorption_score=statistics.mean(rates),
            mean_num_split_features=statistics.mean(splits),
            std_dev_absorption_fraction_score=statistics.stdev(fractions) if len(rows) > 1 else 0.0,
            std_dev_full_absorption_score=statistics.stdev(rates) if len(rows) > 1 else 0.0,
            std_dev_num_split_features=statistics.stdev(splits) if len(rows) > 1 else 0.0)),
        eval_result_details=[_detail(row) for row in rows],
        sae_bench_commit_hash=get_sae_bench_version(), sae_lens_id=name, sae_lens_release_id="l0eval",
        sae_lens_version=get_sae_lens_version(), sae_cfg_dict=sae.cfg.to_dict())
    return asdict(output)


def _detail(row) -> object:
    from sae_bench.evals.absorption.eval_output import AbsorptionResultDetail

    return AbsorptionResultDetail(
        first_letter=row["letter"], mean_absorption_fraction=float(row["mean_absorption_fraction"]),
        full_absorption_rate=float(row["full_absorption_rate"]), num_full_absorption=int(row["num_full_absorption"]),
        num_probe_true_positives=int(row["num_probe_true_positives"]), num_split_features=int(row["num_split_feats"]))
