"""SynthSAEBench worlds as ``Family`` parts: members trained here on a world (as toy members are), and the
world as an activation source (``activations: {synthetic: NAME}`` evaluates loaded SAEs on a world)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from l0eval.errors import SpecError
from l0eval.family.model import (
    FLOAT_BYTES,
    EvaluationJob,
    Family,
    GroundTruth,
    MemberSource,
    Obtained,
    TrainingOverrides,
)
from l0eval.family.sources import SourceContext
from l0eval.family.synthetic_spec import KIND, SyntheticFamilySpec, parse_synthetic_family, parse_world
from l0eval.family.toy_family import GeneratedActivations, TrainedHereMembers, overridden
from l0eval.family.toy_spec import BUILTIN_DIR, builtin_family_names, read_yaml_file
from l0eval.family.validation import check_keys

# What a synthetic world's selectors are judged against (l0eval.runs.synthetic.targets measures each)
WORLD_TRUTH = GroundTruth("true_l0", None, "feature_recovery",
                          targets=("true_l0", "true_l0_top_width", "best_f1", "best_mcc"))


@dataclass(frozen=True)
class TrainedWorldMembers(TrainedHereMembers):
    """Members l0eval trains together on a SynthSAEBench world (or reuses from its cache)."""

    spec: SyntheticFamilySpec

    def obtain(self, family: Family, job: EvaluationJob) -> Obtained:
        from l0eval.runs.synthetic import obtain_trained

        return obtain_trained(self.spec, job)

    def estimated_bytes(self, ids: list[str]) -> int:
        config = self.spec.world.config
        hidden, features = (config.hidden_dim, config.num_features) if config is not None else (768, 16384)
        weights = 2 * hidden * self.spec.sae.d_sae * len(ids)
        return FLOAT_BYTES * (weights + self.spec.evaluation.samples * (hidden + features))

    def record(self, family: Family, snd_n: list[int]) -> dict[str, Any]:
        return self.spec.to_dict()

    def content(self, family: Family) -> dict[str, Any]:
        return {"spec": self.spec.to_dict(), "fingerprint": self.spec.fingerprint()}

    def describe(self, family: Family) -> str:
        spec, config = self.spec, self.spec.world.config
        ks = ", ".join(f"{k:g}" for k in spec.sae.k_values)
        world = spec.world.hub or f"{config.num_features} features, hidden {config.hidden_dim}"
        return (f"{spec.name} (synthetic world: {world}): {spec.description}\nk = {ks}; "
                f"seeds {list(spec.training.seeds)}; trained by l0eval")

    def table_row(self, family: Family) -> list[str]:
        ks = list(self.spec.sae.k_values)
        return [KIND, "-", str(self.spec.sae.d_sae), "batchtopk", str(len(ks)), f"{min(ks):g}-{max(ks):g}", "-",
                "trains"]

    def with_overrides(self, overrides: TrainingOverrides) -> MemberSource:
        return TrainedWorldMembers(overridden(self.spec, overrides))


@dataclass(frozen=True)
class WorldActivations(GeneratedActivations):
    """A SynthSAEBench world: an evaluation set sampled with its feature activations (known truth)."""

    kind = KIND
    extra_formulas = ("synthetic_ground_truth",)
    name: str
    spec: SyntheticFamilySpec

    def record(self) -> Any:
        return self.name

    def content(self) -> dict[str, Any]:
        return {KIND: self.name, "world": self.spec.world.to_dict(), "evaluation": self.spec.to_dict()["evaluation"]}

    def inputs_per_sae(self) -> int:
        return self.spec.evaluation.samples

    def ground_truth(self) -> GroundTruth:
        return WORLD_TRUTH

    def evaluate(self, family: Family, obtained: Obtained, job: EvaluationJob) -> dict[str, Any]:
        from l0eval.runs.synthetic import evaluate_on_world

        return evaluate_on_world(self.spec, family, obtained, job)

    def check_reachable(self) -> None:
        from l0eval.activations.synthetic import check_world_reachable

        check_world_reachable(self.spec.world, self.name.split("@")[0])

    def download(self) -> Iterator[str]:
        from l0eval.activations.synthetic import download_world

        yield download_world(self.spec.world)


def synthetic_spec_by_name(name: str) -> SyntheticFamilySpec:
    """A built-in synthetic family's spec."""
    path = BUILTIN_DIR / f"{name}.yaml"
    raw = read_yaml_file(path) if name in builtin_family_names() else None
    if not isinstance(raw, dict) or raw.get("kind") != KIND:
        raise SpecError(f"'{name}' is not a built-in synthetic family")
    return parse_synthetic_family(raw, str(path))


def parse_synthetic_activations(value: Any, context: SourceContext) -> WorldActivations:
    """``activations: {synthetic: NAME}``: a built-in synthetic family's world and evaluation set; or
    ``{synthetic: {family: NAME, world: WORLD}}``: that family's evaluation set and selectors on another world
    (``world`` as in a synthetic family file: a ``config`` or a ``hub`` copy), e.g. the published copy of the
    world that a hub family's SAEs were trained on; ``family`` may also be a ``kind: synthetic`` file."""
    try:
        if isinstance(value, dict):
            check_keys(value, {"family", "world"}, "", required={"family", "world"})
            spec = dataclasses.replace(_named_or_file(value["family"], context), world=parse_world(value["world"]))
            return WorldActivations(f"{value['family']}@{spec.world.hub or spec.world.key}", spec)
        if not isinstance(value, str) or not value:
            raise SpecError(f"must name a synthetic family (e.g. synthsaebench-1k), got {value!r}")
        return WorldActivations(value, synthetic_spec_by_name(value))
    except SpecError as exc:
        raise SpecError(f"'{context.where}': {exc}") from exc


def _named_or_file(value: Any, context: SourceContext) -> SyntheticFamilySpec:
    """A built-in synthetic family by name, or a ``kind: synthetic`` file (relative to the family file)."""
    if isinstance(value, str) and value.endswith((".yaml", ".yml")):
        path = context.base / value
        raw = read_yaml_file(path)
        if not isinstance(raw, dict) or raw.get("kind") != KIND:
            raise SpecError(f"{path} is not a synthetic family file (kind: {KIND})")
        return parse_synthetic_family(raw, str(path))
    if not isinstance(value, str):
        raise SpecError(f"'family' must name a synthetic family or its file, got {value!r}")
    return synthetic_spec_by_name(value)


def synthetic_family(spec: SyntheticFamilySpec) -> Family:
    """A synthetic spec as a family: trained here on its world, judged against the world's targets."""
    return Family(name=spec.name, description=spec.description, kind=KIND, members=TrainedWorldMembers(spec),
                  activations=WorldActivations(spec.name, spec), ground_truth=WORLD_TRUTH,
                  evaluation=spec.evaluation, selectors=spec.selectors,
                  spec_path=spec.source)

