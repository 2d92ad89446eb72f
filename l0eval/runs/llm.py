"""Evaluate a family of SAEs on an LLM's residual stream over a text corpus.

One cached model pass, streamed through every SAE (``l0eval.runs.streamed``); CE/KL with each SAE spliced
into the model; sparse probing and absorption (``l0eval.downstream``) as the downstream targets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from l0eval.downstream.probe_data import datasets_in_corpus
from l0eval.downstream.suite import run_downstream
from l0eval.errors import L0EvalError
from l0eval.family.llm_spec import LLMActivationSpec
from l0eval.family.model import EvaluationJob, Family, MemberInfo, Obtained
from l0eval.metrics.registry import metric_versions
from l0eval.results import build_results, now
from l0eval.runs.notices import report_skipped
from l0eval.runs.streamed import BATCH_ROWS, bootstrap_record, n_values_for, sae_entries, streamed_metrics
from l0eval.selection.sweep import sweep_verdict

NO_TRUE_L0 = ("LLM families have no true L0; the downstream targets are the peak of sparse_probing_k1/k16 and the "
              "lowest absorption_fraction in by_l0 (when probing and absorption ran)")


@dataclass(frozen=True)
class _SharedPass:
    """What the streamed core/s_n^dec pass measured, for the run record."""

    ran: bool
    n_values: list[int]
    rows: int
    width: int


def evaluate_on_llm(spec: LLMActivationSpec, family: Family, obtained: Obtained, job: EvaluationJob) -> dict:
    """One model pass (cached) streamed through every SAE, then the downstream metrics on shared activations."""
    from l0eval.activations.llm.pipeline import activation_cache
    from l0eval.family.profiles import downstream_for

    job = replace(job, downstream=downstream_for(spec, job.downstream))
    downstream = job.downstream
    # core (reconstruction, sparsity) and snd (s_n^dec, c_dec, c_enc) come from the same streamed pass
    shared_pass = downstream.wants("core") or downstream.wants("snd")
    _check_measurable(obtained.members, shared_pass)
    loaded, filled = activation_cache(spec, job.device, job.progress, lambda loaded: _check_d_model(
        family, spec, obtained.saes, loaded.model.config.hidden_size))
    cache = spec.evaluation_cache(filled)
    width = obtained.saes[0].cfg.d_sae
    snd_n, n_values = n_values_for(obtained.members, width)
    rows = cache.n_rows(spec.exclude_bos)
    metrics = (streamed_metrics(obtained.saes, lambda: cache.batches(BATCH_ROWS, spec.exclude_bos), n_values, rows,
                                job.progress) if shared_pass else [{} for _ in obtained.saes])
    if spec.ce_sequences and downstream.wants("core"):
        _add_spliced(spec, loaded, obtained.saes, metrics, job)
    extra = _add_downstream(spec, loaded, obtained, metrics, job)
    report_skipped(extra["record"]["skipped"] if extra is not None else downstream.skipped)
    entries = sae_entries(obtained.members, metrics, extra["details"] if extra is not None else None)
    table, selectors = sweep_verdict(entries, snd_n, width, shared_pass)
    return build_results(family=family.members.record(family, snd_n),
                         run=_run_record(spec, cache, job, obtained.training, entries, extra,
                                         _SharedPass(shared_pass, n_values, rows, width)),
                         ground_truth={"true_l0": None, "reason": NO_TRUE_L0}, saes=entries,
                         by_l0=table.to_dict(orient="records"), selectors=selectors,
                         downstream_baselines=extra["baselines"] if extra is not None else None)


def _check_measurable(members: list[MemberInfo], shared_pass: bool) -> None:
    unmeasured = [m.id for m in members if m.nominal_l0 is None]
    if unmeasured and not shared_pass:
        raise L0EvalError(f"member(s) {', '.join(unmeasured)} have no nominal_l0: their L0 is measured in the "
                          "core/snd pass, so add core or snd to --metrics or set nominal_l0")


def _check_d_model(family: Family, spec: LLMActivationSpec, saes: list, d_model: int) -> None:
    d_in = saes[0].cfg.d_in
    if d_model != d_in:
        raise L0EvalError(f"family '{family.name}' has d_in {d_in} but {spec.model} at {spec.hook} gives "
                          f"d_model {d_model}")


def _add_spliced(spec: LLMActivationSpec, loaded, saes: list, metrics: list[dict], job: EvaluationJob) -> None:
    """CE/KL with each SAE's reconstruction spliced in at the hook."""
    from l0eval.activations.llm import splice
    from l0eval.activations.llm.pipeline import token_batches

    tokens = token_batches(spec, loaded.tokenizer, spec.ce_sequences, job.device)
    for met, spliced in zip(metrics, splice.spliced_metrics(loaded.model, tokens, spec.hook, saes, job.progress,
                                                            spec.exclude_bos)):
        met.update(spliced)


def _add_downstream(spec: LLMActivationSpec, loaded, obtained: Obtained, metrics: list[dict],
                    job: EvaluationJob) -> dict | None:
    """Sparse probing and absorption, when asked for: their flat columns join each SAE's metrics."""
    downstream = job.downstream
    if not (downstream.wants("probing") or downstream.wants("absorption")):
        return None
    extra = run_downstream(loaded, spec.hook, [m.id for m in obtained.members], obtained.saes, downstream,
                           job.device, datasets_in_corpus(spec.corpus), job.progress)
    for met, flat in zip(metrics, extra["per_sae"]):
        met.update(flat)
    return extra


def _evaluated_sequences(spec: LLMActivationSpec) -> str:
    if spec.heldout_sequences:
        return (f"the last {spec.heldout_sequences} of the cache's {spec.sequences}, held out from training (members "
                f"trained here saw only the first {spec.training_sequences})")
    return f"all {spec.sequences} cached sequences (nothing held out: trained-here members saw the same tokens)"


def _run_record(spec: LLMActivationSpec, cache, job: EvaluationJob, training: dict, entries: list[dict],
                extra: dict | None, shared: _SharedPass) -> dict[str, Any]:
    downstream = job.downstream
    run = {**job.header, "finished": now(), "training": training,
           "activations": {**asdict(cache.key), "n_tokens": cache.key.n_tokens,
                           "batch_tokens": BATCH_ROWS, "cache_dir": str(cache.directory)},
           "evaluation": {"n_values": shared.n_values, "decoder_rows": "unit-normalised for s_n^dec",
                          "token_rows": shared.rows,
                          "positions": "every position but BOS" if spec.exclude_bos else "every position, BOS included",
                          "sequences": _evaluated_sequences(spec),
                          "spliced_sequences": spec.ce_sequences if downstream.wants("core") else 0,
                          "metrics": list(downstream.metrics), "width": shared.width},
           "metric_versions": metric_versions(*spec.extra_formulas),
           "downstream": extra["record"] if extra is not None else {"metrics": list(downstream.metrics),
                                                                    "skipped": dict(downstream.skipped)}}
    if shared.ran:
        run["evaluation"]["bootstrap"] = bootstrap_record(entries)
    if extra is not None:
        run["seeds"] = extra["record"]["seeds"]
    return run
