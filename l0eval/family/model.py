"""The family model: SAEs identical but for L0, as one type composed of parts.

A ``Family`` is
- its **members** (a ``MemberSource``): SAEs trained here from a toy spec, or loaded SAEs (local
  folders, hub repos, SAELens releases, and those `l0eval train` added);
- its **activations** (an ``ActivationSource``): the toy generator, an LLM corpus, or any source registered
  in ``l0eval.family.sources``;
- its **ground truth** (``GroundTruth``): a known true L0 with a per-SAE score, or the downstream targets;
- its **evaluation** settings (``EvaluationSettings``: how many generated inputs each SAE sees, their seed, the n
  at which s_n^dec is reported; LLM families measure on their activations' held-out part instead);
- its **selectors** (``SelectorSpec``: the hand-set s_n^dec n values and the canonical L0).

Families of loaded SAEs take their ground truth, evaluation and selectors from their activation source (a toy's
or a world's own settings); trained-here families from their spec.

Built-in toys, user YAML files and the hub registry all resolve to this type (``l0eval.family.catalog``);
the runner (``l0eval.executors.local.run_family``) and the Ray executor only call the parts' methods.
Nothing here imports torch: listing families stays instant.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from l0eval.errors import L0EvalError

# SAE weights and activations are float32 whatever the model's dtype
FLOAT_BYTES = 4


@dataclass(frozen=True)
class EvaluationJob:
    """How one run evaluates a family: where, how loudly, and which downstream metrics."""

    device: str = "cpu"
    progress: bool = True
    downstream: Any = None  # l0eval.downstream.suite.DownstreamConfig
    header: dict[str, Any] = field(default_factory=dict)  # the results' provenance, taken when the run started


@dataclass(frozen=True)
class MemberInfo:
    """What the runner needs to know about one SAE beside its weights."""

    id: str
    nominal_l0: float | None
    seed: int = 0
    rho: float | None = None
    trained_here: bool = False


@dataclass(frozen=True)
class Obtained:
    """A family's SAEs as its member source got them, with the results' ``run.training`` record."""

    saes: list
    members: list[MemberInfo]
    training: dict[str, Any]
    trained_from_spec: bool = False  # l0eval trained every member from the family's toy spec in this cache


@dataclass(frozen=True)
class TrainingOverrides:
    """Command-line changes to a trained-here family's training (``--samples``, ``--seed``, ``--seeds``,
    ``--paper-recipe``); families of loaded SAEs ignore them."""

    samples: int | None = None
    seed: int | None = None
    seeds: int | None = None
    paper_recipe: bool = False


@dataclass(frozen=True)
class GroundTruth:
    """What a family's selectors are judged against."""

    kind: str  # "true_l0" (known, with a per-SAE score), "downstream" (LLM targets) or "none"
    true_l0: float | None = None
    score: str | None = None  # the metric that says how good a chosen SAE is
    # several known-truth targets, measured when the family is evaluated (synthetic worlds: true L0 over all
    # features and over the top-width ones, the L0s of best F1 and best MCC); results list them in this order
    targets: tuple[str, ...] = ()


NO_GROUND_TRUTH = GroundTruth("none")
DOWNSTREAM_TARGETS = GroundTruth("downstream")


class MemberSource(ABC):
    """Where a family's SAEs come from."""

    @abstractmethod
    def ids(self) -> list[str]:
        """Member ids, in the order results list them."""

    @abstractmethod
    def obtain(self, family: Family, job: EvaluationJob) -> Obtained:
        """The SAEs as sae-lens objects: trained (or reused from the cache) or loaded."""

    @abstractmethod
    def subset(self, ids: list[str]) -> MemberSource:
        """Only these members (a shard of the family); sources whose members train together return self."""

    @abstractmethod
    def member_content(self) -> dict[str, Any]:
        """Per member id, what its weights depend on (keys the per-SAE records)."""

    @abstractmethod
    def estimated_bytes(self, ids: list[str]) -> int:
        """Memory for these members' weights and one batch of their activations."""

    @abstractmethod
    def record(self, family: Family, snd_n: list[int]) -> dict[str, Any]:
        """The results' ``family`` section."""

    @abstractmethod
    def content(self, family: Family) -> dict[str, Any]:
        """What the family's numbers depend on, members aside (keys the per-SAE records)."""

    @abstractmethod
    def describe(self, family: Family) -> str:
        """``l0eval families show``."""

    @abstractmethod
    def table_row(self, family: Family) -> list[str]:
        """``l0eval families``: model, layer, width, architecture, #L0s, L0 range, download size, cached."""

    def declared_width(self) -> int:
        """The members' width where the family declares it (0: unknown until they load)."""
        return 0

    def with_overrides(self, overrides: TrainingOverrides) -> MemberSource:
        return self

    def memory_needed(self) -> int:
        """Bytes a run holds at once for these members, checked against the machine before it starts (0: no
        estimate before the members load)."""
        return 0

    def needs(self, family: Family) -> list:
        """What `l0eval run` needs that is not there yet (``l0eval.family.readiness.Need``); none by default."""
        return []

    def with_trained(self, trained: list[dict[str, Any]], activations: ActivationSource | None) -> MemberSource:
        """These members plus the ones `l0eval train` recorded for the family (``saes.store.trained_members``)."""
        return self

    def download(self, family: Family) -> Iterator[str]:
        """Fetch every member into the hub cache and check it loads; one line per member."""
        raise L0EvalError(f"'{family.name}' is a toy family: l0eval trains it, there is nothing to download")


class ActivationSource(ABC):
    """Where a family's SAEs read their inputs. A new source is one module with a subclass and one
    ``l0eval.family.sources.register_activation_source`` call."""

    kind: ClassVar[str]  # the key naming the source in a family file's ``activations`` and in results
    extra_formulas: ClassVar[tuple[str, ...]] = ()  # metric groups beyond the streamed ones (registry keys)
    trains_members: ClassVar[bool] = False  # `l0eval train` can add members on these activations

    @abstractmethod
    def record(self) -> Any:
        """What results record under ``family.activations[kind]``."""

    def content(self) -> dict[str, Any]:
        """What the numbers depend on (keys the per-SAE records)."""
        return {self.kind: self.record()}

    @abstractmethod
    def inputs_per_sae(self) -> int:
        """Inputs streamed through each SAE (tokens or samples), for progress and scheduling."""

    def model_bytes(self) -> int | None:
        """Memory of the model each shard of the family loads; None: the family runs as one unit."""
        return None

    @abstractmethod
    def ground_truth(self) -> GroundTruth:
        """What loaded SAEs evaluated on these activations are judged against."""

    @abstractmethod
    def evaluate(self, family: Family, obtained: Obtained, job: EvaluationJob) -> dict[str, Any]:
        """The family's results envelope (``l0eval.results.build_results``)."""

    def trained_with(self, member: dict[str, Any]) -> bool:
        """Whether a member `l0eval train` recorded was trained on the inputs this source now gives."""
        return True

    def check_reachable(self) -> None:
        """Refuse, before any work, inputs that cannot be had here (an uncached corpus while offline)."""

    def missing_inputs(self) -> list[str]:
        """Hub files the run reads that are not in the cache (a model, corpus files), one phrase each: a run
        fetches them on the way when online; `l0eval download` fetches them ahead."""
        return []

    def download(self) -> Iterator[str]:
        """Fetch the inputs ``missing_inputs`` names (and any others the run reads from the hub); one line each."""
        return iter(())

    def evaluation_settings(self) -> EvaluationSettings:
        """How SAEs loaded onto these inputs are measured (corpora: by their held-out part, so nothing here)."""
        return EvaluationSettings()

    def selector_settings(self, width: int) -> SelectorSpec:
        """The selectors' settings for SAEs of ``width`` (0: not declared) loaded onto these inputs."""
        return SelectorSpec()

    def training_inputs(self, device: str, progress: bool) -> tuple[Any, bool]:
        """Activations `l0eval train` trains new members on (an activation cache) and whether BOS is left out."""
        raise L0EvalError(f"activations '{self.kind}' cannot train new members (toy families train with `run`; "
                          "`l0eval train` needs an LLM corpus)")


@dataclass(frozen=True)
class EvaluationSettings:
    """How a family's SAEs are measured, apart from where the inputs come from.

    Generated inputs (toys, synthetic worlds) draw ``samples`` inputs with ``seed``; corpus inputs (LLM families)
    leave both unset, their held-out sequences being part of the activations. ``n_values``: the n at which s_n^dec
    is reported (empty: every n up to width/2 on generated inputs, the selectors' n on corpora).
    """

    samples: int | None = None
    seed: int | None = None
    n_values: tuple[int, ...] = ()


@dataclass(frozen=True)
class SelectorSpec:
    snd_n: tuple[int, ...] = ()  # empty: the paper's n/width for the family's width
    canonical_target: float = 100.0


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    kind: str  # "toy", "toy-mixing" (trained here from a toy spec) or "saes" (loaded SAEs), as results record it
    members: MemberSource
    activations: ActivationSource | None
    ground_truth: GroundTruth
    evaluation: EvaluationSettings = EvaluationSettings()
    selectors: SelectorSpec = SelectorSpec()
    spec_path: str = ""

    def member_ids(self) -> list[str]:
        return self.members.ids()

    def with_members(self, ids: list[str]) -> Family:
        return replace(self, members=self.members.subset(ids))

    def with_overrides(self, overrides: TrainingOverrides) -> Family:
        return replace(self, members=self.members.with_overrides(overrides))

    def require_activations(self) -> ActivationSource:
        if self.activations is None:
            raise L0EvalError(f"family '{self.name}' has no activations to run on: add `activations: {{toy: NAME}}` "
                              "or an LLM corpus (`activations: {model: ..., hook: ..., texts: [...]}`) to a family "
                              "file; registry families run on LLM activations once those are wired to the registry")
        return self.activations

    def evaluate(self, job: EvaluationJob) -> dict[str, Any]:
        """Obtain the SAEs, evaluate them on the family's activations and apply every selector."""
        source = self.require_activations()
        return source.evaluate(self, self.members.obtain(self, job), job)

    def content(self) -> dict[str, Any]:
        return self.members.content(self)

    def metric_formulas(self) -> tuple[str, ...]:
        return self.activations.extra_formulas if self.activations is not None else ()

    def inputs_per_sae(self) -> int:
        """0 without activations (the unit reports that when it runs)."""
        return self.activations.inputs_per_sae() if self.activations is not None else 0

    def model_bytes(self) -> int | None:
        return self.activations.model_bytes() if self.activations is not None else None
