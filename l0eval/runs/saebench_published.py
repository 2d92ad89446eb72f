"""``l0eval run --family NAME --targets saebench``: judge a SAEBench registry family without a model pass.

The SAEs' weights give c_dec and c_enc; SAEBench's published core results give the L0 axis and the
reconstruction curve the rate-distortion selectors read; its published sparse probing and absorption give
the targets (``l0eval.downstream.saebench_targets``). s_n^dec needs the model's activations at the hook,
which this path does not compute: those selectors are reported as not computed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, ClassVar

from l0eval.downstream.saebench_targets import (
    ARCHITECTURE_FOLDERS,
    EVAL_TYPES,
    MemberResults,
    PublishedName,
    ResultsDataset,
    SaebenchResultsError,
    member_results,
    published_name,
)
from l0eval.family.model import DOWNSTREAM_TARGETS, ActivationSource, EvaluationJob, Family, Obtained
from l0eval.family.registry import LoadedSAEs
from l0eval.metrics.registry import FORMULAS
from l0eval.results import build_results, now

TARGETS = ("saebench",)  # the values of `l0eval run --targets`

NOT_COMPUTED = {
    "s_n_dec": "needs the model's activations at the hook; --targets saebench makes no model pass (run the family "
               "on its model for s_n^dec)",
    "c_dec_alive": "which latents are alive needs the model's activations",
}
REASON = ("judged against SAEBench's published results (no model pass): the targets are the L0s of peak sparse "
          "probing and lowest absorption in SAEBench's own files; each SAE's files are under "
          "saes[].downstream.saebench.sources")


def download_command(family_name: str) -> str:
    return f"l0eval download --family {family_name} --targets saebench"


@dataclass(frozen=True)
class PublishedResults(ActivationSource):
    """SAEBench's published results standing in for a model pass (the family's members come from the hub)."""

    kind: ClassVar[str] = "saebench_published"
    dataset: ResultsDataset
    family_name: str  # as `l0eval download --family` takes it: the registry name or the family file
    names: dict[str, PublishedName] = field(default_factory=dict)  # member id -> published name
    d_in: int = 0
    width: int = 0

    def record(self) -> dict[str, Any]:
        return {"repo_id": self.dataset.repo_id, "revision": self.dataset.revision, "evals": list(self.dataset.evals),
                "model_pass": False}

    def inputs_per_sae(self) -> int:
        return 0

    def ground_truth(self):
        return DOWNSTREAM_TARGETS

    def check_reachable(self) -> None:
        """Every member's files are cached (or fetched) and about that member, before any SAE loads."""
        self.all_results()

    def all_results(self) -> dict[str, MemberResults]:
        """Every member's published results, read and checked once: the pre-run check and the evaluation share
        them."""
        return self._results

    @cached_property
    def _results(self) -> dict[str, MemberResults]:
        return {member_id: member_results(self.dataset, name, self.d_in, self.width,
                                          download_command(self.family_name))
                for member_id, name in self.names.items()}

    def evaluate(self, family: Family, obtained: Obtained, job: EvaluationJob) -> dict[str, Any]:
        return evaluate_published(self, family, obtained, job)


def with_saebench_targets(family: Family, dataset: ResultsDataset) -> Family:
    """The family judged against SAEBench's published results instead of a model pass."""
    saes = family.members
    if (not isinstance(saes, LoadedSAEs) or saes.origin == "sae_lens_release"
            or saes.architecture not in ARCHITECTURE_FOLDERS or not saes.width):
        raise SaebenchResultsError(f"--targets saebench: family '{family.name}' is not one of the SAEBench suite's "
                                   "families (the saebench-* registry families; `l0eval families` lists them)")
    layer = saes.layer if saes.layer is not None else _hook_layer(saes.hook)
    names = {m.id: published_name(saes.model, layer, saes.width, saes.architecture, m.id)
             for m in saes.saes if not m.trained_here}
    source = PublishedResults(dataset, family.spec_path or family.name, names, saes.d_in, saes.width)
    return replace(family, activations=source, ground_truth=source.ground_truth())


def _hook_layer(hook: str) -> int | None:
    """A family file's layer, from its ``blocks.L.hook_resid_post`` hook (SAEBench's SAEs all sit there)."""
    match = re.fullmatch(r"blocks\.(\d+)\.hook_resid_post", hook)
    return int(match.group(1)) if match else None


def _weight_metrics(sae) -> dict[str, float]:
    from l0eval.metrics.cosine import decoder_cosine, encoder_cosine

    return {"c_dec": decoder_cosine(sae.W_dec), "c_enc": encoder_cosine(sae.W_enc)}


def evaluate_published(source: PublishedResults, family: Family, obtained: Obtained, job: EvaluationJob) -> dict:
    from l0eval.runs.streamed import sae_entries
    from l0eval.selection.selectors import default_selectors
    from l0eval.selection.sweep import sweep_verdict

    published = source.all_results()
    kept = [i for i, member in enumerate(obtained.members) if member.id in published]
    members = [obtained.members[i] for i in kept]
    metrics = [{**published[m.id].columns, **_weight_metrics(obtained.saes[i])} for m, i in zip(members, kept)]
    details = [{"saebench": {"sources": published[m.id].sources, "units": published[m.id].units}} for m in members]
    entries = sae_entries(members, metrics, details)
    width = obtained.saes[0].cfg.d_sae
    table, selectors = sweep_verdict(entries, [], width)
    for selector in default_selectors([], width=width):
        if not selector.applies_to(table):
            metric = "c_dec_alive" if "c_dec_alive" in selector.needs else "s_n_dec"
            selectors[selector.name]["reason"] = f"not computed: {metric} {NOT_COMPUTED[metric]}"
    left_out = [m.id for m in obtained.members if m.id not in published]
    run = {**job.header, "finished": now(), "training": obtained.training,
           "evaluation": {"model_pass": False, "width": width, "metrics": ["c_dec", "c_enc", *source.dataset.evals],
                          "not_computed": NOT_COMPUTED},
           "metric_versions": published_formulas(source.dataset.evals),
           "downstream": {"saebench": {**source.record(), "left_out": left_out,
                                       "left_out_reason": "trained here: SAEBench published nothing about them"
                                       if left_out else None}}}
    return build_results(family=family.members.record(family, []), run=run,
                         ground_truth={"true_l0": None, "reason": REASON, "target_sources": target_sources(entries)},
                         saes=entries, by_l0=table.to_dict(orient="records"), selectors=selectors)


def published_formulas(evals: tuple[str, ...]) -> dict[str, str]:
    """``run.metric_versions``: the weight metrics l0eval computed and the published formulas of the rest."""
    versions = {"c_dec": FORMULAS["c_dec"], "c_enc": FORMULAS["c_enc"],
                "reconstruction": FORMULAS["saebench_core_published"],
                "spliced": FORMULAS["saebench_core_published"]}
    by_eval = {"sparse_probing": "saebench_published_probing", "absorption": "saebench_published_absorption",
               "sparse_probing_sae_probes": "saebench_published_sae_probes"}
    versions.update({by_eval[e]: FORMULAS[by_eval[e]] for e in evals if e in by_eval})
    return versions


def target_sources(entries: list[dict]) -> dict[str, Any]:
    """Per eval type, the dataset and revision every SAE's file came from (one revision per family run)."""
    sources: dict[str, Any] = {}
    for eval_type in EVAL_TYPES:
        files = [e["downstream"]["saebench"]["sources"][eval_type] for e in entries
                 if eval_type in e["downstream"]["saebench"]["sources"]]
        if files:
            sources[eval_type] = {"repo_id": files[0]["repo_id"],
                                  "revisions": sorted({f["revision"] or "" for f in files}),
                                  "paths": [f["path"] for f in files]}
    return sources
