"""Synthetic-world families (``kind: synthetic``): an L0 sweep of BatchTopK SAEs trained on a SynthSAEBench
world. The world section is ``l0eval.activations.synthetic``'s; the SAE, training, evaluation and selector
sections are the toy families' (same keys, same strict parsing)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from l0eval.activations.synthetic import WorldSpec, parse_world
from l0eval.errors import SpecError
from l0eval.family.toy_spec import (
    TRAINING_PROCEDURE_VERSION,
    EvaluationSpec,
    SAESpec,
    SelectorSpec,
    TrainingSpec,
    _jsonable,
    _parse_evaluation,
    _parse_k_values,
    _parse_selectors,
    _parse_training,
)
from l0eval.family.validation import check_keys, number

KIND = "synthetic"


@dataclass(frozen=True)
class SyntheticFamilySpec:
    name: str
    world: WorldSpec
    sae: SAESpec
    training: TrainingSpec
    evaluation: EvaluationSpec
    selectors: SelectorSpec
    description: str = ""
    source: str = ""
    kind: str = KIND
    # set by `l0eval run --samples`: the user chose the budget, so a long CPU run is not refused
    budget_overridden: bool = dataclasses.field(default=False, compare=False)

    # toy-family interface (l0eval.family.toy_family.toy_members): no rho sweep
    mixing = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "description": self.description, "source": self.source,
                "world": self.world.to_dict(), "sae": _jsonable(dataclasses.asdict(self.sae)),
                "training": _jsonable(dataclasses.asdict(self.training)),
                "evaluation": _jsonable(dataclasses.asdict(self.evaluation)),
                "selectors": _jsonable(dataclasses.asdict(self.selectors))}

    def fingerprint(self) -> str:
        """Hash of what changes trained weights: the world, the SAE grid, training and the procedure version."""
        full = self.to_dict()
        content = {key: full[key] for key in ("world", "sae", "training")}
        content["procedure"] = TRAINING_PROCEDURE_VERSION
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]

    def with_training(self, **changes: Any) -> SyntheticFamilySpec:
        return dataclasses.replace(self, training=dataclasses.replace(self.training, **changes),
                                   budget_overridden=self.budget_overridden or "samples" in changes)


def parse_synthetic_family(raw: Any, source: str = "") -> SyntheticFamilySpec:
    top = check_keys(raw, {"name", "kind", "description", "world", "sae", "training", "evaluation", "selectors"},
                     "", required={"name", "kind", "world", "sae"})
    if not isinstance(top["name"], str) or not top["name"].strip():
        raise SpecError("'name' must be a non-empty string")
    world = parse_world(top["world"])
    sae = check_keys(top["sae"], {"d_sae", "k"}, "sae", required={"d_sae", "k"})
    d_sae = number(sae["d_sae"], "sae.d_sae")
    if world.config is not None and d_sae > world.config.num_features:
        raise SpecError(f"'sae.d_sae' ({d_sae}) is larger than the world's {world.config.num_features} features: "
                        "the top-width true L0 and the one-to-one feature matching need d_sae <= num_features")
    return SyntheticFamilySpec(
        name=top["name"], world=world, sae=SAESpec(d_sae=d_sae, k_values=_parse_k_values(sae["k"], d_sae)),
        training=_parse_training(top.get("training", {})),
        evaluation=_parse_evaluation(top.get("evaluation", {}), d_sae),
        selectors=_parse_selectors(top.get("selectors", {}), d_sae),
        description=str(top.get("description", "")), source=source)
