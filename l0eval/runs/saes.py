"""Run an existing SAE family (user YAML) through l0eval's evaluation and selectors.

A family is evaluated either on a toy's activations (``activations: {toy: NAME}``: SAEs trained on a
toy elsewhere, scored against that toy's true L0) or on an LLM's residual stream over a text corpus
(``activations: {model, hook, texts | dataset, ...}``: one cached model pass, streamed through every
SAE; sparse probing and absorption as the downstream targets).
"""

from __future__ import annotations

import sys
from dataclasses import asdict

import pandas as pd

from l0eval.activations.toy.model import ToyModel
from l0eval.downstream.probe_data import datasets_in_corpus
from l0eval.downstream.suite import DownstreamConfig, run_downstream
from l0eval.errors import L0EvalError
from l0eval.family.registry import SAEFamily
from l0eval.family.toy_spec import resolve_family
from l0eval.metrics.registry import metric_versions
from l0eval.metrics.stream import evaluate_family
from l0eval.results import now, run_header
from l0eval.runs.toy import assess_on_toy, eval_batch
from l0eval.saes.loaders import load_family
from l0eval.selection.bootstrap import BootstrapDesign, add_bootstrap
from l0eval.selection.selectors import (
    DEFAULT_N_OVER_WIDTH,
    default_selectors,
    metric_row,
    score_selectors,
    snd_n_values,
    width_fraction_n,
)


def run_sae_family(family: SAEFamily, device: str = "cpu", progress: bool = True,
                   downstream: DownstreamConfig | None = None) -> dict:
    downstream = downstream or DownstreamConfig()
    if "llm" in family.activations:
        return _run_on_llm(family, family.activations["llm"], device, progress, downstream)
    toy_name = family.activations.get("toy")
    if toy_name is None:
        raise L0EvalError(f"family '{family.name}' has no activations to run on: add `activations: {{toy: NAME}}` "
                          "or an LLM corpus (`activations: {model: ..., hook: ..., texts: [...]}`) to a family file; "
                          "registry families run on LLM activations once those are wired to the registry")
    toy_spec = resolve_family(toy_name)
    if toy_spec.toy.d_model != family.d_in:
        raise L0EvalError(f"family '{family.name}' has d_in {family.d_in} but toy '{toy_name}' has d_model "
                          f"{toy_spec.toy.d_model}")
    header = run_header(device)
    model = ToyModel(toy_spec.toy)
    saes = load_family(family, device)
    x, features = eval_batch(model, toy_spec)
    identities = [{"id": m.id, "l0": _nominal_l0(m, sae), "seed": 0, "trained_here": m.trained_here}
                  for m, sae in zip(family.members, saes)]
    assessment = assess_on_toy(toy_spec, model, saes, identities, x, features)
    flag_l0_disagreements(assessment["saes"])
    skipped = {name: "needs an LLM family (toy activations have no text)" for name in ("probing", "absorption")
               if downstream.wants(name)}
    _report_skipped(skipped)
    return {"schema_version": 1, "family": _family_record(family, list(toy_spec.selectors.snd_n)),
            "run": {**header, "finished": now(), "seeds": {"evaluation_data": toy_spec.evaluation.seed},
                    "training": _NOT_TRAINED, "evaluation": assessment.pop("evaluation"),
                    "metric_versions": metric_versions(), "downstream": {"skipped": skipped}},
            **assessment}


_NOT_TRAINED = {"reused_cache": True, "samples_per_sae": None,
                "note": "SAEs loaded, not trained in this run (trained-here members say how under family.members)"}


def _nominal_l0(member, sae) -> float:
    nominal = member.nominal_l0 if member.nominal_l0 is not None else getattr(sae.cfg, "k", None)
    if nominal is None:
        raise L0EvalError(f"member '{member.id}' has no nominal_l0 and its config has no k; set nominal_l0")
    return float(nominal)


def _family_record(family: SAEFamily, snd_n: list[int]) -> dict:
    activations = {key: (asdict(value) if key == "llm" else value) for key, value in family.activations.items()}
    return {"name": family.name, "kind": "saes", "description": family.description, "d_in": family.d_in,
            "source": family.source, "activations": activations, "spec_path": family.spec_path,
            "selectors": {"snd_n": snd_n},
            "members": [{"id": m.id, "path": m.path, "repo_id": m.repo_id, "format": m.format,
                         "nominal_l0": m.nominal_l0, "trained_here": m.trained_here,
                         **({"training": m.training} if m.trained_here else {})} for m in family.members]}


def _run_on_llm(family: SAEFamily, spec, device: str, progress: bool, downstream: DownstreamConfig) -> dict:
    """One model pass (cached) streamed through every SAE, then the downstream metrics on shared activations."""
    from l0eval.activations.llm import splice
    from l0eval.activations.llm.pipeline import activation_cache, token_batches

    header = run_header(device)
    # core (reconstruction, sparsity) and snd (s_n^dec, c_dec, c_enc) come from the same streamed pass
    shared_pass = downstream.wants("core") or downstream.wants("snd")
    unmeasured = [m.id for m in family.members if m.nominal_l0 is None]
    if unmeasured and not shared_pass:
        raise L0EvalError(f"member(s) {', '.join(unmeasured)} have no nominal_l0: their L0 is measured in the "
                          "core/snd pass, so add core or snd to --metrics or set nominal_l0")
    saes = load_family(family, device)  # first: a family without usable SAEs fails before the model pass
    loaded, cache = activation_cache(spec, device, progress)
    d_model = next(cache.shards()).shape[1]
    if d_model != family.d_in:
        raise L0EvalError(f"family '{family.name}' has d_in {family.d_in} but {spec.model} at {spec.hook} gives "
                          f"d_model {d_model}")
    width = saes[0].cfg.d_sae
    snd_n = [width_fraction_n(width, DEFAULT_N_OVER_WIDTH)]
    # members without a nominal L0 get no self-consistent n (their L0 is known only after this pass)
    n_values = snd_n_values([m.nominal_l0 for m in family.members if m.nominal_l0 is not None], width, snd_n)
    # the paper's LLM SAEs have unit-norm decoder rows; s_n^dec is read on unit rows for LLM families
    rows = cache.n_rows(spec.exclude_bos)
    metrics = (evaluate_family(saes, cache.batches(LLM_BATCH_TOKENS, spec.exclude_bos), n_values,
                               normalize_decoder=True, progress_total=rows if progress else None, keep_batches=True)
               if shared_pass else [{} for _ in saes])
    if spec.ce_sequences and downstream.wants("core"):
        tokens = token_batches(spec, loaded.tokenizer, spec.ce_sequences, device)
        for met, spliced in zip(metrics, splice.spliced_metrics(loaded.model, tokens, spec.hook, saes, progress,
                                                                spec.exclude_bos)):
            met.update(spliced)
    extra = None
    if downstream.wants("probing") or downstream.wants("absorption"):
        extra = run_downstream(loaded, spec.hook, [m.id for m in family.members], saes, downstream, device,
                               datasets_in_corpus(spec.corpus), progress)
        for met, flat in zip(metrics, extra["per_sae"]):
            met.update(flat)
    _report_skipped(extra["record"]["skipped"] if extra is not None else downstream.skipped)
    entries = []
    for index, (member, met) in enumerate(zip(family.members, metrics)):
        batches = met.pop("batches", None)
        entry = {"id": member.id, "nominal_l0": member.nominal_l0, "measured_l0": met.get("l0"),
                 "trained_here": member.trained_here, "metrics": met}
        if batches is not None:
            entry["batches"] = batches
        if extra is not None:
            entry["downstream"] = extra["details"][index]
        entries.append(entry)
    flag_l0_disagreements(entries)
    table, selectors = sweep_verdict(entries, snd_n, width, shared_pass)
    run = {**header, "finished": now(), "training": _NOT_TRAINED,
           "activations": {**asdict(cache.key), "n_tokens": cache.key.n_tokens,
                           "batch_tokens": LLM_BATCH_TOKENS, "cache_dir": str(cache.directory)},
           "evaluation": {"n_values": n_values, "decoder_rows": "unit-normalised for s_n^dec", "token_rows": rows,
                          "positions": "every position but BOS" if spec.exclude_bos else "every position, BOS included",
                          "spliced_sequences": spec.ce_sequences if downstream.wants("core") else 0,
                          "metrics": list(downstream.metrics), "width": width},
           "metric_versions": metric_versions("spliced"),
           "downstream": extra["record"] if extra is not None else {"metrics": list(downstream.metrics),
                                                                    "skipped": dict(downstream.skipped)}}
    if shared_pass:
        run["evaluation"]["bootstrap"] = BootstrapDesign().record(len(entries[0]["batches"]["mse"]), 1)
    if extra is not None:
        run["seeds"] = extra["record"]["seeds"]
    results = {"schema_version": 1, "family": _family_record(family, snd_n), "run": run,
               "ground_truth": {"true_l0": None,
                                "reason": "LLM families have no true L0; the downstream targets are the peak of "
                                          "sparse_probing_k1/k16 and the lowest absorption_fraction in by_l0 "
                                          "(when probing and absorption ran)"},
               "saes": entries, "by_l0": table.to_dict(orient="records"),
               "selectors": selectors}
    if extra is not None:
        results["downstream_baselines"] = extra["baselines"]
    return results


def sweep_verdict(entries: list[dict], snd_n: list[int], width: int,
                  selectors_apply: bool = True) -> tuple[pd.DataFrame, dict]:
    """The per-L0 table (mean over SAEs sharing an L0) and every selector's choice with its bootstrap over
    evaluation batches; no selectors when the s_n^dec/core pass did not run. Also rebuilds a family that
    the Ray executor ran in shards."""
    rows = [metric_row(e["nominal_l0"] if e["nominal_l0"] is not None else e["measured_l0"], e["metrics"])
            for e in entries]
    table = pd.DataFrame(rows).groupby("l0", as_index=False).mean()
    if not selectors_apply:
        return table, {}
    selectors = default_selectors(snd_n, width=width)
    return table, add_bootstrap(score_selectors(selectors, table, None), selectors, entries, BootstrapDesign())


def _report_skipped(skipped: dict[str, str]) -> None:
    for name, reason in skipped.items():
        print(f"l0eval: skipped {name}: {reason}", file=sys.stderr)


# s_n^dec's batch size B matters (the paper's LLM protocol: 4096-token batches, values averaged)
LLM_BATCH_TOKENS = 4096


# Loaders that pick the wrong architecture or drop a threshold show up as an L0 far from the release's.
L0_DISAGREEMENT = 0.5


def flag_l0_disagreements(entries: list[dict]) -> None:
    """Warn, in the results and on stderr, when a member's measured L0 is far from its nominal L0."""
    for entry in entries:
        nominal, measured = entry["nominal_l0"], entry["measured_l0"]
        if nominal and measured is not None and abs(measured - nominal) > L0_DISAGREEMENT * nominal:
            entry["warning"] = (f"measured L0 {measured:.3g} is far from nominal {nominal:g}: check that the SAE "
                                "was loaded with the right architecture and threshold")
            print(f"l0eval: warning: {entry['id']}: {entry['warning']}", file=sys.stderr)
