"""Toy families: train (or reuse) a toy spec's SAEs, and evaluate SAEs on a toy's data.

Two kinds of toy family:
- ``toy``: an L0 sweep (k values x seed replicates), scored against the true L0 by feature recovery; SAEs
  loaded from elsewhere (``activations: {toy: NAME}``) are evaluated the same way;
- ``toy-mixing``: the small toy's grid of (rho, k) at ground-truth init, scored by feature mixing.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from l0eval.activations.toy.model import ToyBatchSource, ToyModel, ground_truth_sae, ground_truth_weights
from l0eval.errors import L0EvalError
from l0eval.family.model import EvaluationJob, EvaluationSettings, Family, MemberInfo, Obtained
from l0eval.family.toy_family import ToyMember, toy_members
from l0eval.family.toy_spec import FamilySpec
from l0eval.metrics.reconstruction import ReconstructionAccumulator
from l0eval.metrics.registry import metric_versions
from l0eval.metrics.stream import evaluate_family
from l0eval.metrics.toy_recovery import feature_mixing
from l0eval.results import build_results, now
from l0eval.runs.notices import flag_l0_disagreements, report_skipped
from l0eval.saes import store
from l0eval.selection.bootstrap import BootstrapDesign, add_bootstrap
from l0eval.selection.selectors import default_selectors, metric_row, score_selectors, snd_n_values
from l0eval.train.batched import FamilyTrainer, TrainerConfig, batchtopk_sae, member_seed, sae_lens_init


def _batch_source(spec: FamilySpec, model: ToyModel, members: list[ToyMember]) -> ToyBatchSource:
    """One data stream per (seed replicate, rho): a replicate is an independent run (its own init and
    its own data, as the paper's repeats), and training a member alone with its seed reproduces it.
    ``toy_members`` lists members stream by stream, the order the trainer expects."""
    keys = list(dict.fromkeys((m.seed, m.rho) for m in members))
    return ToyBatchSource([(model.sampler(rho), stream_seed(spec.training.data_seed, seed, rho)) for seed, rho in keys])


def stream_seed(data_seed: int, replicate: int, rho: float | None) -> int:
    return int(np.random.SeedSequence([data_seed, replicate, _rho_tag(rho)]).generate_state(1)[0])


def _rho_tag(rho: float | None) -> int:
    """An integer for rho in seed derivations (0 for families without a rho sweep)."""
    return 0 if rho is None else int(round(rho * 1000)) + 10_000


def _initial_weights(spec: FamilySpec, model: ToyModel, member: ToyMember) -> dict[str, torch.Tensor]:
    if spec.sae.init == "ground_truth":
        return ground_truth_weights(model.embedding, spec.sae.d_sae)
    return sae_lens_init(spec.toy.d_model, spec.sae.d_sae, member_seed(member.seed, member.k, _rho_tag(member.rho)))


def train_or_load(spec: FamilySpec, model: ToyModel, members: list[ToyMember], device: str,
                  progress: bool = True) -> tuple[list, dict]:
    """The toy family's SAEs (sae-lens objects) and a note on how they were obtained (see ``train_members``)."""
    return train_members(spec, members, _batch_source(spec, model, members),
                         [_initial_weights(spec, model, m) for m in members], spec.toy.d_model, device, progress)


def train_members(spec, members: list, source, inits: list[dict], d_in: int, device: str,
                  progress: bool = True) -> tuple[list, dict]:
    """A trained family's SAEs and a note on how they were obtained, for any spec with ``name``,
    ``fingerprint()``, ``sae`` and ``training`` sections (toy and synthetic families).

    Reuses a complete cached family; otherwise trains all members together on ``source``, resuming a
    killed run from its checkpoint, then saves every member in SAELens format.
    """
    directory = store.family_dir(spec.name, spec.fingerprint())
    with store.exclusive(directory, f"family '{spec.name}'"):
        return _train_or_load(spec, members, source, inits, d_in, directory, device, progress)


def _train_or_load(spec, members: list, source, inits: list[dict], d_in: int, directory: Path, device: str,
                   progress: bool) -> tuple[list, dict]:
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
            "dead_feature_window": cfg.window, "resumed_from_step": trainer.resumed_from_step}
    saes = []
    for index, member in enumerate(members):
        sae = trained.member_sae(index, {"l0eval_family": spec.name, "l0eval_member": member.id,
                                         "l0eval_seed": member.seed})
        store.save_member(sae, directory / "members" / member.id)
        saes.append(sae.to(device))
    store.mark_complete(directory, info)
    (directory / "train" / FamilyTrainer.CHECKPOINT).unlink(missing_ok=True)
    return saes, {**info, "reused_cache": False, "cache_dir": str(directory)}


def eval_batch(model: ToyModel, evaluation: EvaluationSettings,
               rho: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(evaluation.seed)
    return model.sampler(rho).sample(evaluation.samples, generator)


@torch.no_grad()
def _reconstruction(sae, x: torch.Tensor) -> dict[str, float]:
    """Reconstruction on the same evaluation batches as the family's metrics."""
    acc = ReconstructionAccumulator(sae.cfg.d_sae, sae.W_dec.device)
    for batch in evaluation_batches(x.to(sae.W_dec.device)):
        acts = sae.encode(batch)
        acc.update(batch, sae.decode(acts), acts)
    return acc.compute()


def obtain_trained(spec: FamilySpec, job: EvaluationJob) -> Obtained:
    members = toy_members(spec)
    saes, training_info = train_or_load(spec, ToyModel(spec.toy), members, job.device, job.progress)
    return Obtained(saes, [MemberInfo(m.id, m.k, m.seed, m.rho, trained_here=True) for m in members], training_info,
                    trained_from_spec=True)


def evaluate_on_toy(spec: FamilySpec, family: Family, obtained: Obtained, job: EvaluationJob) -> dict:
    """The family's SAEs on the toy's evaluation data, as its ground truth's score asks."""
    return _ASSESSMENTS[family.ground_truth.score](spec, family, obtained, job)


def _sweep_results(spec: FamilySpec, family: Family, obtained: Obtained, job: EvaluationJob) -> dict:
    """An L0 sweep: metrics for every SAE and every selector scored against the true L0; SAEs trained here
    from this spec also get the paper's reconstruction checks."""
    model = ToyModel(spec.toy)
    if obtained.saes[0].cfg.d_in != spec.toy.d_model:
        raise L0EvalError(f"family '{family.name}' has d_in {obtained.saes[0].cfg.d_in} but toy '{spec.name}' has "
                          f"d_model {spec.toy.d_model}")
    x, features = eval_batch(model, family.evaluation)
    identities = [{"id": m.id, "l0": _sweep_l0(m, sae), "seed": m.seed, "trained_here": m.trained_here}
                  for m, sae in zip(obtained.members, obtained.saes)]
    assessment = assess_on_toy(family, spec, model, obtained.saes, identities, x, features)
    run = {**job.header, "finished": now(), "seeds": _seeds(spec, family.evaluation) if obtained.trained_from_spec
           else {"evaluation_data": family.evaluation.seed}, "training": obtained.training,
           "evaluation": assessment.pop("evaluation"), "metric_versions": metric_versions()}
    reference = None
    if obtained.trained_from_spec:
        members = toy_members(spec)
        reference = _paper_reference_checks(spec, model, members, obtained.saes, x,
                                            {entry["id"]: entry["metrics"]["mse"] for entry in assessment["saes"]})
    else:
        flag_l0_disagreements(assessment["saes"])
        run["downstream"] = {"skipped": {name: "needs an LLM family (toy activations have no text)"
                                         for name in ("probing", "absorption") if job.downstream.wants(name)}}
        report_skipped(run["downstream"]["skipped"])
    return build_results(family=family.members.record(family, list(family.selectors.snd_n)), run=run, **assessment,
                         reference=reference)


def _sweep_l0(member: MemberInfo, sae) -> float:
    """The sweep axis: the member's nominal L0, else its config's k."""
    nominal = member.nominal_l0 if member.nominal_l0 is not None else getattr(sae.cfg, "k", None)
    if nominal is None:
        raise L0EvalError(f"member '{member.id}' has no nominal_l0 and its config has no k; set nominal_l0")
    return float(nominal)


def assess_on_toy(family: Family, spec: FamilySpec, model: ToyModel, saes: list, identities: list[dict],
                  x: torch.Tensor, features: torch.Tensor) -> dict:
    """Metrics for every SAE on the toy's evaluation batch, the per-L0 table and every selector scored
    against the toy's true L0. ``identities`` give each SAE's id, L0 (the sweep axis), seed replicate
    and whether l0eval trained it."""
    truth = {"true_l0": spec.toy.true_l0, "true_l0_measured": float((features > 0).sum(1).float().mean()),
             "score": "feature_recovery"}
    return assess_family(family, saes, identities, x, model.embedding, truth,
                         normalize_decoder=spec.training.normalize_decoder)


def assess_family(family: Family, saes: list, identities: list[dict], x: torch.Tensor, embedding: torch.Tensor,
                  ground_truth: dict, extra_metrics: list[dict] | None = None, *, normalize_decoder: bool) -> dict:
    """``assess_on_toy`` for any family whose true feature directions ``embedding`` [d, F] are known, with the
    family's evaluation and selector settings: ``ground_truth`` holds its ``true_l0`` (the selectors' scored
    target) and ``score`` column; ``extra_metrics`` (one dict per SAE) join each SAE's metrics and the per-L0
    table; ``normalize_decoder``: whether s_n^dec reads unit-normalised decoder rows (as the SAEs trained)."""
    width, chosen = saes[0].cfg.d_sae, family.selectors
    n_values = family.evaluation.n_values or tuple(sorted(
        {*range(1, width // 2 + 1), *snd_n_values([i["l0"] for i in identities], width, chosen.snd_n)}))
    # the point estimate and the bootstrap read the same batches: the evaluation set in EVALUATION_BATCHES parts,
    # BatchTopK within each (the paper's toys apply it over one batch of 100k; see docs/selectors.md#intervals)
    chunks = evaluation_batches(x)
    metrics = evaluate_family(saes, chunks, n_values, normalize_decoder, embedding, keep_batches=True)
    for met, extra in zip(metrics, extra_metrics or [{}] * len(metrics)):
        met.update(extra)
    per_member = pd.DataFrame([metric_row(ident["l0"], {k: v for k, v in met.items() if k != "batches"},
                                          seed=ident["seed"]) for ident, met in zip(identities, metrics)])
    by_l0 = per_member.drop(columns="seed").groupby("l0", as_index=False).mean()
    seeds = sorted(per_member.seed.unique())
    replicates = [per_member[per_member.seed == s].drop(columns="seed") for s in seeds] if len(seeds) > 1 else []
    selectors = default_selectors(chosen.snd_n, chosen.canonical_target, width, hand_n_oracle=True)
    entries = [{"id": ident["id"], "nominal_l0": ident["l0"], "measured_l0": met["l0"], "seed": ident["seed"],
                "trained_here": ident["trained_here"], "batches": met.pop("batches"), "metrics": met}
               for ident, met in zip(identities, metrics)]
    design = BootstrapDesign()
    return {
        "evaluation": {"samples": x.shape[0],
                       "batch": f"{len(chunks)} batches of {chunks[0].shape[0]}; BatchTopK within each; metrics "
                                "pooled over them (s_n^dec: the mean of the per-batch order statistics)",
                       "n_values": list(n_values), "width": width,
                       "bootstrap": design.record(len(chunks), len(seeds))},
        "ground_truth": ground_truth,
        "saes": entries,
        "by_l0": by_l0.to_dict(orient="records"),
        "selectors": add_bootstrap(score_selectors(selectors, by_l0, ground_truth["true_l0"], ground_truth["score"],
                                                   replicates), selectors, entries, design),
    }


# Toys evaluate on one set cut into this many equal batches; the point estimate pools them, the bootstrap draws them.
EVALUATION_BATCHES = 10


def evaluation_batches(x: torch.Tensor) -> list[torch.Tensor]:
    return list(x.chunk(EVALUATION_BATCHES))


def _paper_reference_checks(spec: FamilySpec, model: ToyModel, members: list[ToyMember], saes: list,
                            x: torch.Tensor, mse_by_id: dict[str, float]) -> dict:
    """The paper's two reconstruction claims, measured on this family.

    1. The ground-truth SAE at each k (trained SAEs beat it at k < true L0: better reconstruction, wrong features).
    2. The SAE trained at the true L0 run at a lower k, vs the SAE trained at that k (the "MSE 2.73 vs 4.88" test).
    """
    # the ground-truth SAE has one latent per true feature: it cannot keep more than n_features of them
    # (sweep-wide's grid runs past its 30 features, its SAEs being wider)
    ground_truth = [{"l0": k, **_reconstruction(ground_truth_sae(model, k), x)} for k in spec.sae.k_values
                    if k <= spec.toy.n_features]
    true_k = float(round(spec.toy.true_l0))
    forced = []
    seed0 = spec.training.seeds[0]
    by_id = {m.id: sae for m, sae in zip(members, saes)}
    correct = by_id.get(ToyMember(true_k, seed0).id)
    if correct is not None:
        for k in [k for k in spec.sae.k_values if k < true_k]:
            forced_sae = batchtopk_sae({name: t.cpu() for name, t in correct.state_dict().items()}, k,
                                       correct.cfg.rescale_acts_by_decoder_norm)
            forced.append({"l0": k, "true_l0_sae_mse": _reconstruction(forced_sae, x)["mse"],
                           "trained_at_l0_mse": mse_by_id[ToyMember(k, seed0).id]})
    return {"ground_truth_sae": ground_truth, "true_l0_sae_at_lower_l0": forced}


def _seeds(spec: FamilySpec, evaluation: EvaluationSettings) -> dict:
    correlation_seed = getattr(spec.toy.correlation, "seed", None)
    return {"training_replicates": list(spec.training.seeds), "training_data": spec.training.data_seed,
            "evaluation_data": evaluation.seed, "embedding": spec.toy.embedding_seed,
            "correlation": correlation_seed,
            "member_init": "numpy SeedSequence([replicate seed, round(1000 k), rho tag]) per member",
            "member_data": "numpy SeedSequence([training_data, replicate seed, rho tag]) per (replicate, rho)"}


def _mixing_results(spec: FamilySpec, family: Family, obtained: Obtained, job: EvaluationJob) -> dict:
    """The small toy: SAEs initialised at the ground truth drift towards the correlated feature when k < true L0."""
    model = ToyModel(spec.toy)
    feature = spec.mixing.feature
    inputs = {rho: eval_batch(model, family.evaluation, rho)[0] for rho in spec.mixing.rho}
    records = []
    for member, sae in zip(obtained.members, obtained.saes):
        recon = _reconstruction(sae, inputs[member.rho])
        records.append({"id": member.id, "nominal_l0": member.nominal_l0, "measured_l0": recon["l0"],
                        "seed": member.seed, "rho": member.rho, "trained_here": member.trained_here,
                        "metrics": {**recon, "feature_mixing": feature_mixing(sae.W_dec.cpu(), model.embedding,
                                                                              feature)}})
    table = pd.DataFrame([{"rho": r["rho"], "l0": r["nominal_l0"], "feature_mixing": r["metrics"]["feature_mixing"]}
                          for r in records])
    grid = table.groupby(["rho", "l0"], as_index=False)["feature_mixing"].agg(["mean", "std"]).reset_index()
    return build_results(
        family=family.members.record(family, list(family.selectors.snd_n)),
        run={**job.header, "finished": now(), "seeds": _seeds(spec, family.evaluation), "training": obtained.training,
             "evaluation": {"samples": family.evaluation.samples}, "metric_versions": metric_versions()},
        ground_truth={"true_l0": spec.toy.true_l0, "score": "feature_mixing",
                      "expected": "mixing has the sign of rho for k < true L0, about 0 at rho = 0 or k = true L0"},
        saes=records,
        mixing_grid=[{key: value for key, value in row.items() if key != "index"}
                     for row in grid.to_dict(orient="records")],  # NaN (one replicate's std) becomes null
        selectors={},
    )


# How a toy family is assessed, by its ground truth's score
_ASSESSMENTS = {"feature_recovery": _sweep_results, "feature_mixing": _mixing_results}
