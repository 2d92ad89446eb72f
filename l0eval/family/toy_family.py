"""Toy families as ``Family`` parts: members trained here from a toy spec, and the toy generator as an
activation source (``activations: {toy: NAME}`` evaluates loaded SAEs on a toy's data)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from l0eval.errors import L0EvalError, SpecError
from l0eval.family.model import (
    FLOAT_BYTES,
    ActivationSource,
    EvaluationJob,
    EvaluationSettings,
    Family,
    GroundTruth,
    MemberSource,
    Obtained,
    SelectorSpec,
    TrainingOverrides,
)
from l0eval.family.sources import SourceContext
from l0eval.family.toy_spec import FamilySpec, toy_spec_by_name

# --paper-recipe: the paper's training of its toys
PAPER_RECIPE = {"samples": 15_000_000, "lr": 3e-4, "seeds": tuple(range(5))}


@dataclass(frozen=True)
class ToyMember:
    """One SAE of a toy family: its k, its seed replicate and (mixing toys) its rho."""

    k: float
    seed: int
    rho: float | None = None

    @property
    def id(self) -> str:
        rho = "" if self.rho is None else f"_rho{self.rho:+g}"
        return f"k{self.k:g}{rho}_seed{self.seed}"


def toy_members(spec: FamilySpec) -> list[ToyMember]:
    rhos = spec.mixing.rho if spec.mixing is not None else (None,)
    return [ToyMember(k, seed, rho) for seed, rho, k in itertools.product(spec.training.seeds, rhos,
                                                                         spec.sae.k_values)]


def _l0_text(l0s: list[float]) -> str:
    return f"{min(l0s):g}-{max(l0s):g}" if l0s else "from config"


def overridden(spec, overrides: TrainingOverrides):
    """A trained-here spec (toy or synthetic: both have ``training`` and ``with_training``) with the command
    line's training overrides applied."""
    if overrides.samples is not None and overrides.samples < spec.training.batch_size:
        raise L0EvalError(f"--samples {overrides.samples} is smaller than one batch ({spec.training.batch_size})")
    if overrides.paper_recipe:
        spec = spec.with_training(**PAPER_RECIPE)
    if overrides.samples is not None:
        spec = spec.with_training(samples=overrides.samples)
    if overrides.seeds is not None or overrides.seed is not None:
        count = overrides.seeds if overrides.seeds is not None else len(spec.training.seeds)
        base = overrides.seed if overrides.seed is not None else spec.training.seeds[0]
        spec = spec.with_training(seeds=tuple(range(base, base + count)),
                                  data_seed=base if overrides.seed is not None else spec.training.data_seed)
    return spec


class TrainedHereMembers(MemberSource):
    """Members l0eval trains together from a spec's sae/training sections (a toy or a synthetic world): one
    member per (k, seed replicate), never split, and the family's content key covers the spec."""

    spec: Any

    def ids(self) -> list[str]:
        return [member.id for member in toy_members(self.spec)]

    def declared_width(self) -> int:
        return self.spec.sae.d_sae

    def subset(self, ids: list[str]) -> MemberSource:
        return self  # the sweep's SAEs train together

    def member_content(self) -> dict[str, Any]:
        return {member_id: member_id for member_id in self.ids()}


@dataclass(frozen=True)
class TrainedToyMembers(TrainedHereMembers):
    """Members l0eval trains together from a toy spec (or reuses from its cache)."""

    spec: FamilySpec

    def obtain(self, family: Family, job: EvaluationJob) -> Obtained:
        from l0eval.runs.toy import obtain_trained

        return obtain_trained(self.spec, job)

    def estimated_bytes(self, ids: list[str]) -> int:
        toy, samples = self.spec.toy, self.spec.evaluation.samples
        weights = 2 * toy.d_model * self.spec.sae.d_sae * len(ids)
        return FLOAT_BYTES * (weights + samples * (toy.d_model + toy.n_features))

    def record(self, family: Family, snd_n: list[int]) -> dict[str, Any]:
        return self.spec.to_dict()

    def content(self, family: Family) -> dict[str, Any]:
        return {"spec": self.spec.to_dict(), "fingerprint": self.spec.fingerprint()}

    def describe(self, family: Family) -> str:
        spec = self.spec
        ks = ", ".join(f"{k:g}" for k in spec.sae.k_values)
        return (f"{spec.name} ({spec.kind}): {spec.description}\ntrue L0 {spec.toy.true_l0:.4f}; "
                f"k = {ks}; seeds {list(spec.training.seeds)}; trained by l0eval")

    def table_row(self, family: Family) -> list[str]:
        ks = list(self.spec.sae.k_values)
        return ["toy", "-", str(self.spec.sae.d_sae), "batchtopk", str(len(ks)), _l0_text(ks), "-", "trains"]

    def memory_needed(self) -> int:
        from l0eval.memory_check import toy_family_bytes

        return toy_family_bytes(self.spec)

    def with_overrides(self, overrides: TrainingOverrides) -> MemberSource:
        return TrainedToyMembers(overridden(self.spec, overrides))


class GeneratedActivations(ActivationSource):
    """Inputs generated from a spec with evaluation and selectors sections (a toy or a synthetic world): SAEs
    loaded onto them are measured and selected as the spec's own members are."""

    spec: Any

    def evaluation_settings(self) -> EvaluationSettings:
        return self.spec.evaluation

    def selector_settings(self, width: int) -> SelectorSpec:
        """The spec's own, unless the loaded SAEs' width differs from its members': its hand-set n was chosen
        for that width, so such SAEs get the paper's n/width for theirs (e.g. full-width SAEs on a world whose
        spec trains narrower ones)."""
        if width and width != self.spec.sae.d_sae:
            return SelectorSpec((), self.spec.selectors.canonical_target)
        return self.spec.selectors


@dataclass(frozen=True)
class ToyActivations(GeneratedActivations):
    """The toy generator of ``spec``: one in-memory evaluation set with known features and true L0."""

    kind = "toy"
    name: str
    spec: FamilySpec

    def record(self) -> Any:
        return self.name

    def content(self) -> dict[str, Any]:
        return {"toy": self.name, "toy_spec": self.spec.to_dict()}

    def inputs_per_sae(self) -> int:
        return self.spec.evaluation.samples

    def ground_truth(self) -> GroundTruth:
        return GroundTruth("true_l0", self.spec.toy.true_l0, "feature_recovery")

    def evaluate(self, family: Family, obtained: Obtained, job: EvaluationJob) -> dict[str, Any]:
        from l0eval.runs.toy import evaluate_on_toy

        return evaluate_on_toy(self.spec, family, obtained, job)


def parse_toy_activations(value: Any, context: SourceContext) -> ToyActivations:
    """``activations: {toy: NAME}``: a built-in toy's name or a toy family file."""
    if not isinstance(value, str) or not value:
        raise SpecError(f"'{context.where}' must name a toy family (e.g. toy), got {value!r}")
    return ToyActivations(value, toy_spec_by_name(value))


def toy_family(spec: FamilySpec) -> Family:
    """A toy spec as a family: trained here, on its own generator, judged against its true L0."""
    score = "feature_mixing" if spec.mixing is not None else "feature_recovery"
    return Family(name=spec.name, description=spec.description, kind=spec.kind, members=TrainedToyMembers(spec),
                  activations=ToyActivations(spec.name, spec),
                  ground_truth=GroundTruth("true_l0", spec.toy.true_l0, score), evaluation=spec.evaluation,
                  selectors=spec.selectors,
                  spec_path=spec.source)
