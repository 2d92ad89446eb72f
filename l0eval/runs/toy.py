"""Run a toy family end to end: train (or reuse) its SAEs, evaluate them, apply the selectors.

Two kinds of toy family:
- ``toy``: an L0 sweep (k values x seed replicates), scored against the true L0;
- ``toy-mixing``: the small toy's grid of (rho, k) at ground-truth init, scored by feature mixing.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from l0eval.activations.toy.model import ToyBatchSource, ToyModel, ground_truth_sae, ground_truth_weights
from l0eval.family.toy_spec import FamilySpec
from l0eval.metrics.reconstruction import ReconstructionAccumulator
from l0eval.metrics.registry import metric_versions
from l0eval.metrics.stream import evaluate_family
from l0eval.metrics.toy_recovery import feature_mixing
from l0eval.results import now, run_header
from l0eval.saes import store
from l0eval.selection.bootstrap import BootstrapDesign, add_bootstrap
from l0eval.selection.selectors import default_selectors, metric_row, score_selectors, snd_n_values
from l0eval.train.batched import FamilyTrainer, TrainerConfig, batchtopk_sae, member_seed, sae_lens_init


@dataclass(frozen=True)
class Member:
    """One SAE of a toy family: its k, its seed replicate and (mixing toys) its rho."""

    k: float
    seed: int
    rho: float | None = None

    @property
    def id(self) -> str:
        rho = "" if self.rho is None else f"_rho{self.rho:+g}"
        return f"k{self.k:g}{rho}_seed{self.seed}"


def family_members(spec: FamilySpec) -> list[Member]:
    rhos = spec.mixing.rho if spec.mixing is not None else (None,)
    return [Member(k, seed, rho) for seed, rho, k in itertools.product(spec.training.seeds, rhos, spec.sae.k_values)]


def _batch_source(spec: FamilySpec, model: ToyModel, members: list[Member]) -> ToyBatchSource:
    """One data stream per (seed replicate, rho): a replicate is an independent run (its own init and
    its own data, as the paper's repeats), and training a member alone with its seed reproduces it.
    ``family_members`` lists members stream by stream, the order the trainer expects."""
    keys = list(dict.fromkeys((m.seed, m.rho) for m in members))
    return ToyBatchSource([(model.sampler(rho), stream_seed(spec.training.data_seed, seed, rho)) for seed, rho in keys])


def stream_seed(data_seed: int, replicate: int, rho: float | None) -> int:
    return int(np.random.SeedSequence([data_seed, replicate, _rho_tag(rho)]).generate_state(1)[0])


def _rho_tag(rho: float | None) -> int:
    """An integer for rho in seed derivations (0 for families without a rho sweep)."""
    return 0 if rho is None else int(round(rho * 1000)) + 10_000


def _initial_weights(spec: FamilySpec, model: ToyModel, member: Member) -> dict[str, torch.Tensor]:
    if spec.sae.init == "ground_truth":
        return ground_truth_weights(model.embedding, spec.sae.d_sae)
    return sae_lens_init(spec.toy.d_model, spec.sae.d_sae, member_seed(member.seed, member.k, _rho_tag(member.rho)))


def train_or_load(spec: FamilySpec, model: ToyModel, members: list[Member], device: str,
                  progress: bool = True) -> tuple[list, dict]:
    """The toy family's SAEs (sae-lens objects) and a note on how they were obtained (see ``train_members``)."""
    return train_members(spec, members, _batch_source(spec, model, members),
                         [_initial_weights(spec, model, m) for m in members], spec.toy.d_model, device, progress)


def train_members(spec, members: list[Member], source, inits: list[dict], d_in: int, device: str,
                  progress: bool = True) -> tuple[list, dict]:
    """A trained family's SAEs and a note on how they were obtained, for any spec with ``name``,
    ``fingerprint()``, ``sae`` and ``training`` sections (toy and synthetic families).

    Reuses a complete cached family; otherwise trains all members together on ``source``, resuming a
    killed run from its checkpoint, then saves every member in SAELens format.
    """
    directory = store.family_dir(spec.name, spec.fingerprint())
    if store.is_complete(directory):
        saes = [store.load_member(directory / "members" / m.id, device) for m in members]
        return saes, {**store.read_marker(directory), "reused_cache": True, "cache_dir": str(directory)}
    cfg = TrainerConfig(d_in=d_in, d_sae=spec.sae.d_sae, samples=spec.training.samples,
                        batch_size=spec.training.batch_size, lr=spec.training.lr,
                        dead_feature_window=spec.training.dead_feature_window,
                        aux_loss_coefficient=spec.training.aux_loss_coefficient,
                        normalize_decoder=spec.training.normalize_decoder)
    trainer = FamilyTrainer(cfg, inits, [m.k for m in members], source, device=device,
                            workdir=directory / "train", fingerprint=spec.fingerprint())
    started = time.monotonic()
    trained = trainer.fit(progress=progress)
    info = {"trained_at": now(), "train_seconds": time.monotonic() - started, "steps": cfg.steps,
            "samples_per_sae": cfg.steps * cfg.batch_size, "batch_size": cfg.batch_size,
            "resumed_from_step": trainer.resumed_from_step}
    saes = []
    for index, member in enumerate(members):
        sae = trained.member_sae(index, {"l0eval_family": spec.name, "l0eval_member": member.id,
                                         "l0eval_seed": member.seed})
        sae.save_model(str(directory / "members" / member.id))
        saes.append(sae.to(device))
    store.mark_complete(directory, info)
    (directory / "train" / FamilyTrainer.CHECKPOINT).unlink(missing_ok=True)
    return saes, {**info, "reused_cache": False, "cache_dir": str(directory)}


def eval_batch(model: ToyModel, spec: FamilySpec, rho: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(spec.evaluation.seed)
    return model.sampler(rho).sample(spec.evaluation.samples, generator)


@torch.no_grad()
def _reconstruction(sae, x: torch.Tensor) -> dict[str, float]:
    x = x.to(sae.W_dec.device)
    acc = ReconstructionAccumulator(sae.cfg.d_sae, x.device)
    acts = sae.encode(x)
    acc.update(x, sae.decode(acts), acts)
    return acc.compute()


def run_toy_family(spec: FamilySpec, device: str = "cpu", progress: bool = True) -> dict:
    """Train/evaluate an L0-sweep toy family and score every selector against the true L0."""
    header = run_header(device)
    model = ToyModel(spec.toy)
    members = family_members(spec)
    saes, training_info = train_or_load(spec, model, members, device, progress)
    x, features = eval_batch(model, spec)
    identities = [{"id": m.id, "l0": m.k, "seed": m.seed, "trained_here": True} for m in members]
    assessment = assess_on_toy(spec, model, saes, identities, x, features)
    return {
        "schema_version": 1,
        "family": spec.to_dict(),
        "run": {**header, "finished": now(), "seeds": _seeds(spec), "training": training_info,
                "evaluation": assessment.pop("evaluation"), "metric_versions": metric_versions()},
        **assessment,
        "reference": _paper_reference_checks(spec, model, members, saes, x,
                                             {entry["id"]: entry["metrics"]["mse"] for entry in assessment["saes"]}),
    }


def assess_on_toy(spec: FamilySpec, model: ToyModel, saes: list, identities: list[dict], x: torch.Tensor,
                  features: torch.Tensor) -> dict:
    """Metrics for every SAE on the toy's evaluation batch, the per-L0 table and every selector scored
    against the toy's true L0. ``identities`` give each SAE's id, L0 (the sweep axis), seed replicate
    and whether l0eval trained it."""
    truth = {"true_l0": spec.toy.true_l0, "true_l0_measured": float((features > 0).sum(1).float().mean()),
             "score": "feature_recovery"}
    return assess_family(spec, saes, identities, x, model.embedding, truth)


def assess_family(spec, saes: list, identities: list[dict], x: torch.Tensor, embedding: torch.Tensor,
                  ground_truth: dict, extra_metrics: list[dict] | None = None) -> dict:
    """``assess_on_toy`` for any family whose true feature directions ``embedding`` [d, F] are known:
    ``ground_truth`` holds its ``true_l0`` (the selectors' scored target) and ``score`` column;
    ``extra_metrics`` (one dict per SAE) join each SAE's metrics and the per-L0 table."""
    width = saes[0].cfg.d_sae
    n_values = spec.evaluation.n_values or tuple(sorted(
        {*range(1, width // 2 + 1), *snd_n_values([i["l0"] for i in identities], width, spec.selectors.snd_n)}))
    metrics = evaluate_family(saes, [x], n_values, spec.training.normalize_decoder, embedding)
    for met, extra in zip(metrics, extra_metrics or [{}] * len(metrics)):
        met.update(extra)
    # the bootstrap's batches: the same evaluation set in BOOTSTRAP_BATCHES parts (the metrics above stay
    # those of the whole set, BatchTopK over all of it, as the paper's toy evaluation)
    per_batch = evaluate_family(saes, x.chunk(BOOTSTRAP_BATCHES), n_values, spec.training.normalize_decoder,
                                keep_batches=True)
    per_member = pd.DataFrame([metric_row(ident["l0"], met, seed=ident["seed"])
                               for ident, met in zip(identities, metrics)])
    by_l0 = per_member.drop(columns="seed").groupby("l0", as_index=False).mean()
    seeds = sorted(per_member.seed.unique())
    replicates = [per_member[per_member.seed == s].drop(columns="seed") for s in seeds] if len(seeds) > 1 else []
    selectors = default_selectors(spec.selectors.snd_n, spec.selectors.canonical_target, width)
    entries = [{"id": ident["id"], "nominal_l0": ident["l0"], "measured_l0": met["l0"], "seed": ident["seed"],
                "trained_here": ident["trained_here"], "metrics": met, "batches": batch["batches"]}
               for ident, met, batch in zip(identities, metrics, per_batch)]
    design = BootstrapDesign()
    scored = score_selectors(selectors, by_l0, ground_truth["true_l0"], ground_truth["score"], replicates)
    return {
        "evaluation": {"samples": x.shape[0], "batch": "one batch; BatchTopK over all of it",
                       "n_values": list(n_values), "width": width,
                       "bootstrap": design.record(BOOTSTRAP_BATCHES, len(seeds))},
        "ground_truth": ground_truth,
        "saes": entries,
        "by_l0": by_l0.to_dict(orient="records"),
        "selectors": add_bootstrap(scored, selectors, entries, design),
    }


# Toys evaluate on one set; the bootstrap resamples it as this many equal batches.
BOOTSTRAP_BATCHES = 10


def _paper_reference_checks(spec: FamilySpec, model: ToyModel, members: list[Member], saes: list,
                            x: torch.Tensor, mse_by_id: dict[str, float]) -> dict:
    """The paper's two reconstruction claims, measured on this family.

    1. The ground-truth SAE at each k (trained SAEs beat it at k < true L0: better reconstruction, wrong features).
    2. The SAE trained at the true L0 run at a lower k, vs the SAE trained at that k (the "MSE 2.73 vs 4.88" test).
    """
    ground_truth = [{"l0": k, **_reconstruction(ground_truth_sae(model, k), x)} for k in spec.sae.k_values]
    true_k = float(round(spec.toy.true_l0))
    forced = []
    seed0 = spec.training.seeds[0]
    by_id = {m.id: sae for m, sae in zip(members, saes)}
    correct = by_id.get(Member(true_k, seed0).id)
    if correct is not None:
        for k in [k for k in spec.sae.k_values if k < true_k]:
            forced_sae = batchtopk_sae({name: t.cpu() for name, t in correct.state_dict().items()}, k,
                                       correct.cfg.rescale_acts_by_decoder_norm)
            forced.append({"l0": k, "true_l0_sae_mse": _reconstruction(forced_sae, x)["mse"],
                           "trained_at_l0_mse": mse_by_id[Member(k, seed0).id]})
    return {"ground_truth_sae": ground_truth, "true_l0_sae_at_lower_l0": forced}


def _seeds(spec: FamilySpec) -> dict:
    correlation_seed = getattr(spec.toy.correlation, "seed", None)
    return {"training_replicates": list(spec.training.seeds), "training_data": spec.training.data_seed,
            "evaluation_data": spec.evaluation.seed, "embedding": spec.toy.embedding_seed,
            "correlation": correlation_seed,
            "member_init": "numpy SeedSequence([replicate seed, round(1000 k), rho tag]) per member",
            "member_data": "numpy SeedSequence([training_data, replicate seed, rho tag]) per (replicate, rho)"}


def run_mixing_family(spec: FamilySpec, device: str = "cpu", progress: bool = True) -> dict:
    """The small toy: SAEs initialised at the ground truth drift towards the correlated feature when k < true L0."""
    header = run_header(device)
    model = ToyModel(spec.toy)
    members = family_members(spec)
    saes, training_info = train_or_load(spec, model, members, device, progress)
    feature = spec.mixing.feature
    inputs = {rho: eval_batch(model, spec, rho)[0] for rho in spec.mixing.rho}
    records = []
    for member, sae in zip(members, saes):
        recon = _reconstruction(sae, inputs[member.rho])
        records.append({"id": member.id, "nominal_l0": member.k, "measured_l0": recon["l0"], "seed": member.seed,
                        "rho": member.rho, "trained_here": True,
                        "metrics": {**recon, "feature_mixing": feature_mixing(sae.W_dec.cpu(), model.embedding,
                                                                              feature)}})
    table = pd.DataFrame([{"rho": r["rho"], "l0": r["nominal_l0"], "feature_mixing": r["metrics"]["feature_mixing"]}
                          for r in records])
    grid = table.groupby(["rho", "l0"], as_index=False)["feature_mixing"].agg(["mean", "std"]).reset_index()
    return {
        "schema_version": 1,
        "family": spec.to_dict(),
        "run": {**header, "finished": now(), "seeds": _seeds(spec), "training": training_info,
                "evaluation": {"samples": spec.evaluation.samples}, "metric_versions": metric_versions()},
        "ground_truth": {"true_l0": spec.toy.true_l0, "score": "feature_mixing",
                         "expected": "mixing has the sign of rho for k < true L0, about 0 at rho = 0 or k = true L0"},
        "saes": records,
        "mixing_grid": [{key: (None if isinstance(v, float) and np.isnan(v) else v) for key, v in row.items()
                         if key != "index"} for row in grid.to_dict(orient="records")],
        "selectors": {},
    }


def run_family(spec: FamilySpec, device: str = "cpu", progress: bool = True) -> dict:
    if spec.kind == "toy-mixing":
        return run_mixing_family(spec, device, progress)
    return run_toy_family(spec, device, progress)
