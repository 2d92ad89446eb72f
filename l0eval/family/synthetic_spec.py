"""Synthetic-world families (``kind: synthetic``): an L0 sweep of BatchTopK SAEs trained on a SynthSAEBench
world. The world section is a ``WorldSpec`` (its config parsed by ``l0eval.activations.synthetic``); the SAE,
training, evaluation and selector sections are the toy families' (same keys, same strict parsing).

Nothing here imports torch or sae-lens: the world's ``SyntheticModelConfig`` is parsed from the library's
dataclasses on first use (``WorldSpec.config``), so listing families stays instant; `l0eval run` parses it
before any work (``WorldActivations.check_reachable``)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from l0eval.errors import SpecError
from l0eval.family.model import EvaluationSettings, SelectorSpec
from l0eval.family.toy_spec import (
    TRAINING_PROCEDURE_VERSION,
    SAESpec,
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
class WorldSpec:
    """Where a family's world comes from: a config (built here) or a hub copy ``repo_id[:subfolder]``."""

    raw_config: dict | None = None  # the family file's ``world.config`` (the library's ``to_dict`` layout)
    hub: str | None = None
    sample_chunk: int = 8192  # samples per library call; a training stream is fixed by (world, seed, chunk)
    # a hub copy of this config's world, checked against it where cached (l0eval.activations.synthetic)
    published: str | None = None

    @cached_property
    def config(self):
        """The ``SyntheticModelConfig`` (None for a hub copy), parsed strictly on first use."""
        from l0eval.activations.synthetic import parse_world_config

        return None if self.raw_config is None else parse_world_config(self.raw_config)

    def to_dict(self) -> dict[str, Any]:
        published = {} if self.published is None else {"published": self.published}
        return {"config": None if self.config is None else self.config.to_dict(), "hub": self.hub,
                "sample_chunk": self.sample_chunk, **published}

    @property
    def key(self) -> str:
        from l0eval.activations.synthetic import config_hash

        if self.config is not None:
            return config_hash(self.config)
        return "hub-" + hashlib.sha256(self.hub.encode()).hexdigest()[:16]


def parse_world(raw: Any, where: str = "world") -> WorldSpec:
    world = check_keys(raw, {"config", "hub", "sample_chunk", "published"}, where)
    if ("config" in world) == ("hub" in world):
        raise SpecError(f"'{where}' needs exactly one of 'config' (a SyntheticModelConfig) or 'hub' (a repo id)")
    chunk = number(world.get("sample_chunk", WorldSpec.sample_chunk), f"{where}.sample_chunk")
    if "hub" in world:
        if not isinstance(world["hub"], str) or not world["hub"].strip():
            raise SpecError(f"'{where}.hub' must be a repo id such as owner/name or owner/name:subfolder")
        return WorldSpec(hub=world["hub"], sample_chunk=chunk)
    if not isinstance(world["config"], dict):
        raise SpecError(f"'{where}.config' must be a mapping (a SyntheticModelConfig), got {world['config']!r}")
    published = world.get("published")
    if published is not None and (not isinstance(published, str) or not published.strip()):
        raise SpecError(f"'{where}.published' must be the repo id of the world's hub copy, got {published!r}")
    return WorldSpec(raw_config=world["config"], sample_chunk=chunk, published=published)


@dataclass(frozen=True)
class SyntheticFamilySpec:
    name: str
    world: WorldSpec
    sae: SAESpec
    training: TrainingSpec
    evaluation: EvaluationSettings
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
        content["world"] = {k: v for k, v in content["world"].items() if k != "published"}  # a check, not the world
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
    features = (world.raw_config or {}).get("num_features")  # the config's own type checks come with its parsing
    if isinstance(features, int) and d_sae > features:
        raise SpecError(f"'sae.d_sae' ({d_sae}) is larger than the world's {features} features: "
                        "the top-width true L0 and the one-to-one feature matching need d_sae <= num_features")
    return SyntheticFamilySpec(
        name=top["name"], world=world, sae=SAESpec(d_sae=d_sae, k_values=_parse_k_values(sae["k"], d_sae)),
        training=_parse_training(top.get("training", {})),
        evaluation=_parse_evaluation(top.get("evaluation", {}), d_sae),
        selectors=_parse_selectors(top.get("selectors", {}), d_sae),
        description=str(top.get("description", "")), source=source)
