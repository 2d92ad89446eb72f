"""Family specs: strict, typed parsing of the YAML that defines a toy family.

A spec is data, not code: ``l0eval/family/builtin/*.yaml`` ship the paper's toys and a user can write
their own. Parsing is strict in the scikit-learn spirit: an unknown key, a wrong type or an
impossible value is a ``SpecError`` naming the exact key, never a silent default.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l0eval.errors import SpecError
from l0eval.family.model import EvaluationSettings, SelectorSpec
from l0eval.family.validation import check_keys, family_name, number, number_list
from l0eval.family.yaml_file import read_yaml_file
from l0eval.selection.selectors import DEFAULT_N_OVER_WIDTH
from l0eval.train.dead_window import dead_feature_window_for


@dataclass(frozen=True)
class RandomCorrelation:
    """The paper's ``generate_random_correlation_matrix`` settings (main toy: seed 42)."""

    seed: int = 42
    positive_ratio: float = 0.5
    strength: tuple[float, float] = (0.3, 0.9)
    sparsity: float = 0.3


@dataclass(frozen=True)
class StarCorrelation:
    """The small toy's structure: feature ``feature`` has correlation ``rho`` with every other feature."""

    rho: float
    feature: int = 0


Correlation = RandomCorrelation | StarCorrelation | None


MAX_TOY_FEATURES = 1_000_000  # the spec lists one probability per feature: beyond this it is a typo


def linear_probabilities(n_features: int, high: float, low: float) -> tuple[float, ...]:
    """p_i falls linearly from ``high`` (feature 0) to ``low`` (last feature).

    The paper's p_i = 0.345 (49 - i) / 50 + 0.05 is ``high=0.3881, low=0.05`` for 50 features.
    """
    if n_features == 1:
        return (high,)
    step = (high - low) / (n_features - 1)
    return tuple(low + step * (n_features - 1 - i) for i in range(n_features))


@dataclass(frozen=True)
class ToySpec:
    """The synthetic data: features, their firing statistics and directions."""

    n_features: int
    d_model: int
    probabilities: tuple[float, ...]
    correlation: Correlation
    magnitude_mean: float = 1.0
    magnitude_std: float = 0.15
    embedding_seed: int = 0
    embedding_steps: int = 1000

    @property
    def true_l0(self) -> float:
        """Expected number of active features per input: sum of firing probabilities."""
        return float(sum(self.probabilities))


@dataclass(frozen=True)
class SAESpec:
    d_sae: int
    k_values: tuple[float, ...]
    init: str = "random"  # "random" (sae-lens init) or "ground_truth" (W_enc = E, W_dec = E^T)


@dataclass(frozen=True)
class TrainingSpec:
    samples: int = 3_000_000
    batch_size: int = 1024
    lr: float = 3e-4
    seeds: tuple[int, ...] = (0,)
    data_seed: int = 0
    dead_feature_window: int | None = None  # None: sae-lens's 1000, capped at a quarter of the steps
    aux_loss_coefficient: float = 1.0
    normalize_decoder: bool = False

    def __post_init__(self) -> None:
        try:
            self.window
        except ValueError as exc:
            raise SpecError(f"'training.dead_feature_window': {exc}") from None

    @property
    def window(self) -> int:
        """The dead-latent window training uses (l0eval.train.dead_window's rule)."""
        return dead_feature_window_for(self.samples // self.batch_size, self.dead_feature_window)


# a generated family's evaluation set, unless its file says otherwise (n_values empty: every n in 1..d_sae//2,
# the paper's useful range n < d_sae/2)
DEFAULT_EVALUATION_SAMPLES = 100_000
DEFAULT_EVALUATION_SEED = 12345

# Bump when a code change alters what training a given spec produces (cached SAEs are keyed by it).
TRAINING_PROCEDURE_VERSION = 2


@dataclass(frozen=True)
class MixingSpec:
    """The small toy's experiment: correlation rho of feature ``feature`` swept at fixed k."""

    rho: tuple[float, ...]
    feature: int = 0


@dataclass(frozen=True)
class FamilySpec:
    name: str
    kind: str  # "toy" (an L0 sweep) or "toy-mixing" (the small toy's rho x k grid)
    toy: ToySpec
    sae: SAESpec
    training: TrainingSpec
    evaluation: EvaluationSettings
    selectors: SelectorSpec
    mixing: MixingSpec | None = None
    description: str = ""
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON, with the dead-latent window training uses (set or from the rule)."""
        spec = _jsonable(dataclasses.asdict(self))
        spec["training"]["dead_feature_window"] = self.training.window
        return spec

    def fingerprint(self) -> str:
        """Hash of everything that changes trained weights (not evaluation or selector settings),
        including the version of the training procedure, so changed code never reuses stale SAEs."""
        content = {"toy": self.to_dict()["toy"], "sae": self.to_dict()["sae"], "training": self.to_dict()["training"],
                   "procedure": TRAINING_PROCEDURE_VERSION}
        if self.mixing is not None:
            content["mixing"] = self.to_dict()["mixing"]
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]

    def with_training(self, **changes: Any) -> FamilySpec:
        return dataclasses.replace(self, training=dataclasses.replace(self.training, **changes))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


def _parse_probabilities(value: Any, n_features: int, where: str) -> tuple[float, ...]:
    if isinstance(value, list):
        probabilities = number_list(value, where)
        if len(probabilities) != n_features:
            raise SpecError(f"'{where}' has {len(probabilities)} entries but toy.n_features is {n_features}")
        return tuple(float(p) for p in probabilities)
    check_keys(value, {"linear", "constant"}, where)
    if len(value) != 1:
        raise SpecError(f"'{where}' needs exactly one of 'linear', 'constant' or a list")
    if "constant" in value:
        p = number(value["constant"], f"{where}.constant")
        return (float(p),) * n_features
    linear = check_keys(value["linear"], {"high", "low"}, f"{where}.linear", required={"high", "low"})
    high = number(linear["high"], f"{where}.linear.high")
    low = number(linear["low"], f"{where}.linear.low")
    return linear_probabilities(n_features, float(high), float(low))


def _parse_correlation(value: Any, n_features: int, where: str) -> Correlation:
    if value is None:
        return None
    check_keys(value, {"random", "star"}, where)
    if len(value) != 1:
        raise SpecError(f"'{where}' needs exactly one of 'random', 'star' or null")
    if "star" in value:
        star = check_keys(value["star"], {"rho", "feature"}, f"{where}.star", required={"rho"})
        rho = number(star["rho"], f"{where}.star.rho")
        feature = number(star.get("feature", 0), f"{where}.star.feature", high=n_features - 1)
        return StarCorrelation(rho=float(rho), feature=feature)
    rnd = check_keys(value["random"], {"seed", "positive_ratio", "strength", "sparsity"}, f"{where}.random")
    defaults = RandomCorrelation()
    strength = rnd.get("strength", list(defaults.strength))
    strength = number_list(strength, f"{where}.random.strength")
    if len(strength) != 2 or strength[0] > strength[1]:
        raise SpecError(f"'{where}.random.strength' must be [low, high] with low <= high, got {list(strength)}")
    return RandomCorrelation(
        seed=number(rnd.get("seed", defaults.seed), f"{where}.random.seed"),
        positive_ratio=float(number(rnd.get("positive_ratio", defaults.positive_ratio),
                                     f"{where}.random.positive_ratio")),
        strength=(float(strength[0]), float(strength[1])),
        sparsity=float(number(rnd.get("sparsity", defaults.sparsity), f"{where}.random.sparsity")),
    )


def _parse_toy(raw: Any) -> ToySpec:
    toy = check_keys(raw, {"n_features", "d_model", "probabilities", "correlation", "magnitude", "embedding"},
                      "toy", required={"n_features", "d_model", "probabilities"})
    n_features = number(toy["n_features"], "toy.n_features", high=MAX_TOY_FEATURES)
    d_model = number(toy["d_model"], "toy.d_model")
    magnitude = check_keys(toy.get("magnitude", {}), {"mean", "std"}, "toy.magnitude")
    embedding = check_keys(toy.get("embedding", {}), {"seed", "steps"}, "toy.embedding")
    return ToySpec(
        n_features=n_features,
        d_model=d_model,
        probabilities=_parse_probabilities(toy["probabilities"], n_features, "toy.probabilities"),
        correlation=_parse_correlation(toy.get("correlation"), n_features, "toy.correlation"),
        magnitude_mean=float(number(magnitude.get("mean", 1.0), "toy.magnitude.mean")),
        magnitude_std=float(number(magnitude.get("std", 0.15), "toy.magnitude.std")),
        embedding_seed=number(embedding.get("seed", 0), "toy.embedding.seed"),
        embedding_steps=number(embedding.get("steps", 1000), "toy.embedding.steps"),
    )


def _parse_k_values(raw: Any, d_sae: int) -> tuple[float, ...]:
    if isinstance(raw, dict):
        rng = check_keys(raw, {"range"}, "sae.k", required={"range"})["range"]
        bounds = number_list(rng, "sae.k.range")
        if len(bounds) != 2 or bounds[0] > bounds[1]:
            raise SpecError(f"'sae.k.range' must be [first, last] with first <= last, got {rng}")
        values = tuple(float(k) for k in range(bounds[0], bounds[1] + 1))
    else:
        values = tuple(float(k) for k in number_list(raw, "sae.k"))
    for k in values:
        if k > d_sae:
            raise SpecError(f"'sae.k' value {k:g} is larger than sae.d_sae={d_sae}: a BatchTopK SAE cannot keep "
                            "more latents per input than it has")
    if len(set(values)) != len(values):
        raise SpecError(f"'sae.k' has repeated values: {[f'{k:g}' for k in values]}")
    return values


def _parse_sae(raw: Any, toy: ToySpec) -> SAESpec:
    sae = check_keys(raw, {"d_sae", "k", "init"}, "sae", required={"d_sae", "k"})
    d_sae = number(sae["d_sae"], "sae.d_sae")
    init = sae.get("init", "random")
    if init not in ("random", "ground_truth"):
        raise SpecError(f"'sae.init' must be 'random' or 'ground_truth', got {init!r}")
    if init == "ground_truth" and d_sae < toy.n_features:
        raise SpecError(f"'sae.init: ground_truth' needs sae.d_sae >= toy.n_features ({toy.n_features}), got {d_sae}")
    return SAESpec(d_sae=d_sae, k_values=_parse_k_values(sae["k"], d_sae), init=init)


def _parse_training(raw: Any) -> TrainingSpec:
    tr = check_keys(raw, {f.name for f in dataclasses.fields(TrainingSpec)}, "training")
    defaults = TrainingSpec()
    seeds = tr.get("seeds", list(defaults.seeds))
    spec = TrainingSpec(
        samples=number(tr.get("samples", defaults.samples), "training.samples"),
        batch_size=number(tr.get("batch_size", defaults.batch_size), "training.batch_size"),
        lr=float(number(tr.get("lr", defaults.lr), "training.lr")),
        seeds=tuple(number_list(seeds, "training.seeds")),
        data_seed=number(tr.get("data_seed", defaults.data_seed), "training.data_seed"),
        dead_feature_window=number(tr["dead_feature_window"], "training.dead_feature_window")
        if "dead_feature_window" in tr else None,
        aux_loss_coefficient=float(number(tr.get("aux_loss_coefficient", defaults.aux_loss_coefficient),
                                           "training.aux_loss_coefficient")),
        normalize_decoder=tr.get("normalize_decoder", defaults.normalize_decoder),
    )
    if not isinstance(spec.normalize_decoder, bool):
        raise SpecError(f"'training.normalize_decoder' must be true or false, got {spec.normalize_decoder!r}")
    if len(set(spec.seeds)) != len(spec.seeds):
        raise SpecError(f"'training.seeds' has repeated values: {list(spec.seeds)}")
    if spec.samples < spec.batch_size:
        raise SpecError(f"'training.samples' ({spec.samples}) is smaller than one batch ({spec.batch_size})")
    return spec


def _parse_evaluation(raw: Any, d_sae: int) -> EvaluationSettings:
    ev = check_keys(raw, {"samples", "seed", "n_values"}, "evaluation")
    n_values = tuple(number_list(ev["n_values"], "evaluation.n_values", high=d_sae - 1)) \
        if "n_values" in ev else ()
    return EvaluationSettings(
        samples=number(ev.get("samples", DEFAULT_EVALUATION_SAMPLES), "evaluation.samples"),
        seed=number(ev.get("seed", DEFAULT_EVALUATION_SEED), "evaluation.seed"),
        n_values=n_values,
    )


def _parse_selectors(raw: Any, d_sae: int) -> SelectorSpec:
    sel = check_keys(raw, {"snd_n", "canonical_target"}, "selectors")
    default_n = [min(d_sae - 1, max(1, round(DEFAULT_N_OVER_WIDTH * d_sae)))]
    return SelectorSpec(
        snd_n=tuple(number_list(sel.get("snd_n", default_n), "selectors.snd_n",
                                 high=d_sae - 1)),
        canonical_target=float(number(sel.get("canonical_target", 100.0), "selectors.canonical_target")),
    )


def _parse_mixing(raw: Any, toy: ToySpec) -> MixingSpec:
    mix = check_keys(raw, {"rho", "feature"}, "mixing", required={"rho"})
    feature = number(mix.get("feature", 0), "mixing.feature", high=toy.n_features - 1)
    return MixingSpec(rho=tuple(float(r) for r in number_list(mix["rho"], "mixing.rho")),
                      feature=feature)


def parse_family(raw: Any, source: str = "") -> FamilySpec:
    """Validate a family mapping (as loaded from YAML) into a ``FamilySpec``."""
    top = check_keys(raw, {"name", "kind", "description", "toy", "sae", "training", "evaluation", "selectors",
                            "mixing"}, "", required={"name", "kind", "toy", "sae"})
    family_name(top["name"])
    kind = top["kind"]
    if kind not in ("toy", "toy-mixing"):
        raise SpecError(f"'kind' must be 'toy' or 'toy-mixing', got {kind!r}")
    toy = _parse_toy(top["toy"])
    sae = _parse_sae(top["sae"], toy)
    mixing = _parse_mixing(top["mixing"], toy) if "mixing" in top else None
    if kind == "toy-mixing" and mixing is None:
        raise SpecError("kind 'toy-mixing' needs a 'mixing' section with the rho values to sweep")
    if kind == "toy" and mixing is not None:
        raise SpecError("'mixing' is only allowed with kind 'toy-mixing'")
    return FamilySpec(
        name=top["name"],
        kind=kind,
        toy=toy,
        sae=sae,
        training=_parse_training(top.get("training", {})),
        evaluation=_parse_evaluation(top.get("evaluation", {}), sae.d_sae),
        selectors=_parse_selectors(top.get("selectors", {}), sae.d_sae),
        mixing=mixing,
        description=str(top.get("description", "")),
        source=source,
    )


def load_family_file(path: str | Path, raw: Any = None) -> FamilySpec:
    """Read (unless ``raw`` is given) and validate a toy family YAML file."""
    raw = read_yaml_file(path) if raw is None else raw
    try:
        return parse_family(raw, source=str(path))
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from exc


BUILTIN_DIR = Path(__file__).parent / "builtin"


def builtin_family_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def toy_spec_by_name(name_or_path: str) -> FamilySpec:
    """A built-in family by name (``toy``) or a YAML file by path."""
    candidate = BUILTIN_DIR / f"{name_or_path}.yaml"
    if candidate.is_file():
        return load_family_file(candidate)
    if name_or_path.endswith((".yaml", ".yml")) or Path(name_or_path).exists():
        return load_family_file(name_or_path)
    hint = difflib.get_close_matches(name_or_path, builtin_family_names(), n=1)
    suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
    raise SpecError(f"unknown family '{name_or_path}' (built-in: {', '.join(builtin_family_names())}){suggestion}")
