"""Run a SynthSAEBench-world family: train its L0 sweep on the world (the toy path's batched trainer), evaluate
it with l0eval's metrics and sae-lens's synthetic ground-truth evaluation, and score every selector against
each ground-truth target.

Targets (``ground_truth.targets``): the true L0 over all features, the true L0 over the top-``width``
features by base firing probability (what SynthSAEBench compares a width-``width`` SAE with), and the
grid L0s where sae-lens's F1 and MCC peak (mean over seed replicates).
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from sae_lens.synthetic import SyntheticModel, eval_sae_on_synthetic_data

from l0eval.activations.synthetic import WorldBatchSource, load_world, sample_with_features, worlds_dir
from l0eval.errors import L0EvalError, SpecError
from l0eval.family.model import EvaluationJob, Family, MemberInfo, Obtained
from l0eval.family.synthetic_spec import SyntheticFamilySpec
from l0eval.family.toy_family import toy_members
from l0eval.metrics.registry import metric_versions
from l0eval.results import build_results, now
from l0eval.runs.toy import _rho_tag, assess_family, stream_seed, train_members
from l0eval.saes import store
from l0eval.selection.verdict import grid_step
from l0eval.train.batched import member_seed, sae_lens_init

# Rough throughputs for the cost estimate. CPU: the committed CPU worlds trained at ~0.7 GFLOP/s per process
# (one thread each, three at once on the shared 2-core machine: results/bench/synthetic_worlds.json) and
# sampled ~1,600 samples/s for 1,024 features; the 16k build (orthogonalisation) took ~55 min (issue 16).
# GPU figures are order-of-magnitude guesses, said so when printed.
CPU_FLOPS = {"train": 1.0e9, "orthogonalise": 3.7e10}
GPU_FLOPS = {"train": 5.0e13, "orthogonalise": 5.0e13}
CPU_SAMPLE_COST = 4.0e-7  # seconds per (sample x feature) of SyntheticModel.sample at chunk 8192
GPU_SAMPLE_COST = 2.0e-10
# A CPU run estimated above this is refused unless `--samples` sets the budget explicitly.
CPU_REFUSE_SECONDS = 3600.0


def estimate_cost(spec: SyntheticFamilySpec, device: str) -> dict:
    """Seconds to build the world, sample its training streams and train the sweep (0 for what is cached)."""
    gpu = device.startswith("cuda")
    flops, sample_cost = (GPU_FLOPS, GPU_SAMPLE_COST) if gpu else (CPU_FLOPS, CPU_SAMPLE_COST)
    cfg = spec.world.config
    members = len(spec.sae.k_values) * len(spec.training.seeds)
    steps = spec.training.samples // spec.training.batch_size
    samples = steps * spec.training.batch_size
    build = 0.0
    if cfg is not None and not (worlds_dir() / spec.world.key / "l0eval_world.json").is_file() \
            and cfg.orthogonalization is not None:
        # Adam on the n x n Gram matrix: forward and backward, 2 n^2 d flops each, per step
        build = cfg.orthogonalization.num_steps * 6 * cfg.num_features ** 2 * cfg.hidden_dim / flops["orthogonalise"]
    features = cfg.num_features if cfg is not None else 16384
    hidden = cfg.hidden_dim if cfg is not None else 768
    trained = store.is_complete(store.family_dir(spec.name, spec.fingerprint()))
    sampling = 0.0 if trained else samples * len(spec.training.seeds) * features * sample_cost
    # encoder and decoder, forward and two backward matmuls each: 12 B d h flops per member-step
    training = 0.0 if trained else members * samples * 12 * hidden * spec.sae.d_sae / flops["train"]
    return {"device": "gpu (rough)" if gpu else "cpu", "members": members, "steps": steps,
            "build_world_seconds": build, "sample_seconds": sampling, "train_seconds": training,
            "total_seconds": build + sampling + training}


def check_budget(spec: SyntheticFamilySpec, device: str) -> dict:
    """Print the estimate; on a CPU refuse a run above ``CPU_REFUSE_SECONDS`` unless the budget was set."""
    estimate = estimate_cost(spec, device)
    print(f"{spec.name}: estimated cost on {estimate['device']}: {_hours(estimate['total_seconds'])} "
          f"(world build {_hours(estimate['build_world_seconds'])}, sampling {_hours(estimate['sample_seconds'])}, "
          f"training {estimate['members']} SAEs x {estimate['steps']} steps {_hours(estimate['train_seconds'])})",
          file=sys.stderr, flush=True)
    if (not device.startswith("cuda") and estimate["total_seconds"] > CPU_REFUSE_SECONDS
            and not spec.budget_overridden):
        raise L0EvalError(f"'{spec.name}' would take about {_hours(estimate['total_seconds'])} on this CPU; run it "
                          f"with --device cuda, or lower the budget explicitly with --samples N")
    return estimate


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2g} h" if seconds >= 3600 else f"{seconds / 60:.2g} min"


def obtain_trained(spec: SyntheticFamilySpec, job: EvaluationJob) -> Obtained:
    """The sweep's SAEs trained on the world (or reused from the cache), after the cost check."""
    estimate = check_budget(spec, job.device)
    model, world = load_world(spec.world, job.device, job.progress)
    if spec.sae.d_sae > model.cfg.num_features:
        raise SpecError(f"'sae.d_sae' ({spec.sae.d_sae}) is larger than the world's {model.cfg.num_features} "
                        "features")
    members = toy_members(spec)
    seeds = [stream_seed(spec.training.data_seed, seed, None) for seed in spec.training.seeds]
    source = WorldBatchSource(model, seeds, spec.world.sample_chunk)
    inits = [sae_lens_init(model.cfg.hidden_dim, spec.sae.d_sae, member_seed(m.seed, m.k, _rho_tag(None)))
             for m in members]
    saes, training = train_members(spec, members, source, inits, model.cfg.hidden_dim, job.device, job.progress)
    if not training["reused_cache"]:
        training["world_sample_seconds"] = source.sample_seconds
    training = {**training, "world": world, "cost_estimate": estimate}
    return Obtained(saes, [MemberInfo(m.id, m.k, m.seed, trained_here=True) for m in members], training,
                    trained_from_spec=True)


def evaluate_on_world(spec: SyntheticFamilySpec, family: Family, obtained: Obtained, job: EvaluationJob) -> dict:
    """The family's SAEs on the world's evaluation set: l0eval's metrics, sae-lens's synthetic evaluation, and
    every selector scored against each ground-truth target."""
    model, world = load_world(spec.world, job.device, job.progress)
    training = dict(obtained.training)
    world = training.pop("world", world)
    estimate = training.pop("cost_estimate", None)
    evaluation = family.evaluation
    x, features = sample_with_features(model, evaluation.samples, evaluation.seed, spec.world.sample_chunk)
    identities = [{"id": m.id, "l0": m.nominal_l0 if m.nominal_l0 is not None else sae.cfg.k, "seed": m.seed,
                   "trained_here": m.trained_here} for m, sae in zip(obtained.members, obtained.saes)]
    truth = true_l0s(model, features, obtained.saes[0].cfg.d_sae)
    directions = model.feature_dict.feature_vectors.T.detach()
    assessment = assess_family(family, obtained.saes, identities, x, directions,
                               {**truth, "score": family.ground_truth.score},
                               [ground_truth_metrics(sae, model, features) for sae in obtained.saes],
                               normalize_decoder=spec.training.normalize_decoder)
    assessment["ground_truth"] = {**assessment["ground_truth"],
                                  **targets(assessment["by_l0"], truth, family.ground_truth.targets)}
    seeds = {"training_replicates": list(spec.training.seeds), "training_data": spec.training.data_seed,
             "evaluation_data": evaluation.seed,
             "world": spec.world.config.seed if spec.world.config is not None else None,
             "member_data": "numpy SeedSequence([training_data, replicate seed, 0]) per replicate: "
                            "the torch RNG seed of that replicate's world stream",
             "member_init": "numpy SeedSequence([replicate seed, round(1000 k), 0]) per member"}
    run = {**job.header, "finished": now(), "world": world, "cost_estimate": estimate, "seeds": seeds,
           "training": training, "evaluation": assessment.pop("evaluation"),
           "metric_versions": metric_versions(*family.metric_formulas())}
    return build_results(family=family.members.record(family, list(family.selectors.snd_n)), run=run, **assessment)


def true_l0s(model: SyntheticModel, features: torch.Tensor, width: int) -> dict:
    """Mean active features per input on the evaluation set: all features, and the ``width`` features with
    the highest base firing probability (the config's, before hierarchy compensation)."""
    base = model.cfg.firing_probability.generate(model.cfg.num_features, seed=model.cfg.seed)
    top = torch.argsort(base, descending=True, stable=True)[:width]
    active = features > 0
    measured = float(active.sum(1).float().mean())
    return {"true_l0": measured, "true_l0_measured": measured,
            "true_l0_top_width": float(active[:, top.to(features.device)].sum(1).float().mean()),
            "top_width": width}


class _Replay:
    """Hands sae-lens's evaluation the evaluation set's feature activations instead of fresh draws, so
    every SAE and l0eval's own metrics see the same inputs (sae-lens samples from the global RNG)."""

    def __init__(self, features: torch.Tensor):
        self.features, self.position = features, 0

    def sample(self, batch_size: int) -> torch.Tensor:
        batch = self.features[self.position:self.position + batch_size]
        self.position += batch_size
        return batch


def ground_truth_metrics(sae, model: SyntheticModel, features: torch.Tensor) -> dict:
    """sae-lens's synthetic evaluation of one SAE on the evaluation set (BatchTopK over all of it)."""
    result = eval_sae_on_synthetic_data(sae, model.feature_dict, _Replay(features), num_samples=features.shape[0])
    return {"mcc": result.mcc, "uniqueness": result.uniqueness, "f1": result.classification.f1_score,
            "precision": result.classification.precision, "recall": result.classification.recall,
            "shrinkage": result.shrinkage, "dead_latents": result.dead_latents,
            "synthetic_explained_variance": result.explained_variance}


def targets(by_l0: list[dict], truth: dict, names: tuple[str, ...]) -> dict:
    """The verdict's targets (``names``, in the family's ground truth's order) and whether they agree (within
    one step of the L0 grid of each other)."""
    grid = np.array([row["l0"] for row in by_l0], dtype=float)
    f1 = [row["f1"] for row in by_l0]
    mcc = [row["mcc"] for row in by_l0]
    found = [{"name": "true_l0", "l0": truth["true_l0"], "score": "feature_recovery"},
             {"name": "true_l0_top_width", "l0": truth["true_l0_top_width"], "score": "feature_recovery"},
             {"name": "best_f1", "l0": float(grid[int(np.argmax(f1))]), "score": "f1"},
             {"name": "best_mcc", "l0": float(grid[int(np.argmax(mcc))]), "score": "mcc"}]
    found = sorted((t for t in found if t["name"] in names), key=lambda t: names.index(t["name"]))
    steps = {t["name"]: grid_step(grid, t["l0"]) for t in found}
    agree = max(steps.values()) - min(steps.values()) <= 1
    text = "all targets lie within one grid step of each other" if agree else "targets disagree: " + "; ".join(
        f"{t['name']} at L0 {t['l0']:.3g} (grid step {steps[t['name']]})" for t in found)
    return {"targets": found, "targets_agree": agree, "targets_note": text}
