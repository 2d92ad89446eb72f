"""An LLM corpus as a family's activation source, as written in a family file (no torch import)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from l0eval.errors import SpecError
from l0eval.family.model import DOWNSTREAM_TARGETS, ActivationSource, EvaluationJob, Family, GroundTruth, Obtained
from l0eval.family.sources import SourceContext
from l0eval.family.validation import check_keys, number


@dataclass(frozen=True)
class LLMActivationSpec(ActivationSource):
    """Residual-stream activations of a causal LM on a text corpus.

    BOS is prepended by default, as the paper and SAELens do, and its activations are kept: the
    paper's s_n^dec protocol includes BOS positions. ``exclude_bos`` keeps them in the cache but leaves
    them out of SAE training and the streamed metrics, and leaves the BOS position unreconstructed when
    the SAE is spliced in (SAELens's ``exclude_special_tokens``, SAEBench's
    ``exclude_special_tokens_from_reconstruction``). Models with a massive BOS activation need it: in
    SmolLM2-135M at layer 12 the BOS rows carry 98% of the variance at context 128, so an SAE trained on
    them spends its reconstruction on one position per sequence and a variance explained near 1 says
    nothing about the other 127.
    """

    model: str
    hook: str
    texts: tuple[str, ...] = ()  # local .txt / .jsonl files
    dataset: str | None = None  # or a Hugging Face dataset (streamed; offline once cached)
    sae_probes_datasets: tuple[str, ...] = ()  # or datasets shipped in the sae-probes wheel (offline)
    split: str = "train"
    field: str = "text"
    context: int = 128
    sequences: int = 256
    prepend_bos: bool = True
    exclude_bos: bool = False
    batch_sequences: int = 8  # model forward batch; also the shard size of the cache
    ce_sequences: int = 16  # sequences for CE/KL with the SAE spliced in (full forward passes); 0 skips
    # The last ``heldout_sequences`` of the cache are never trained on: `l0eval train` draws from the others and
    # `l0eval run` measures every metric (streamed pass, CE/KL) on these alone. 0: one set for both (members
    # loaded from elsewhere were not trained on this corpus anyway).
    heldout_sequences: int = 0
    dtype: str = "float32"  # of the cached activations
    # The model's compute dtype. float32 is the default (deterministic across machines, and the CPU has no
    # fast bf16); bfloat16/float16 halve memory and time on GPU. SAE math stays float32 either way.
    model_dtype: str = "float32"
    revision: str = "main"  # of a hub model
    # files of the `dataset` repo read as the corpus (parquet, jsonl or txt), at `dataset_revision`: fetched
    # with huggingface_hub, read from its cache offline (empty: the dataset is streamed with `datasets`)
    dataset_files: tuple[str, ...] = ()
    dataset_revision: str = "main"
    profile: str = ""  # the model profile a registry family took its defaults from (l0eval/family/profiles.py)

    kind = "llm"
    extra_formulas = ("spliced",)
    trains_members = True

    @property
    def corpus(self) -> str:
        if self.sae_probes_datasets:
            return "sae-probes:" + ",".join(self.sae_probes_datasets)
        if self.dataset_files:
            return f"{self.dataset}@{self.dataset_revision}:{','.join(self.dataset_files)}"
        return self.dataset if self.dataset else ",".join(Path(t).name for t in self.texts)

    def record(self) -> Any:
        # fields added after family files existed are left out at their defaults: the records (and the per-SAE
        # record keys) of family files written before them stay the same
        return {key: value for key, value in asdict(self).items()
                if not (key in _LATER_FIELD_DEFAULTS and value == _LATER_FIELD_DEFAULTS[key])}

    def inputs_per_sae(self) -> int:
        return self.sequences * self.context

    def model_bytes(self) -> int | None:
        from l0eval.activations.llm.models import estimated_model_bytes

        return estimated_model_bytes(self.model, self.model_dtype)

    def ground_truth(self) -> GroundTruth:
        return DOWNSTREAM_TARGETS

    def evaluate(self, family: Family, obtained: Obtained, job: EvaluationJob) -> dict[str, Any]:
        from l0eval.runs.llm import evaluate_on_llm

        return evaluate_on_llm(self, family, obtained, job)

    @property
    def training_sequences(self) -> int:
        return self.sequences - self.heldout_sequences

    def trained_with(self, member: dict[str, Any]) -> bool:
        """After a family file switches ``exclude_bos`` or ``heldout_sequences``, SAEs trained the other way are
        left out (and `l0eval train` makes new ones). Members recorded before an option existed were trained
        with its default (BOS included, nothing held out)."""
        return (member.get("exclude_bos", False) == self.exclude_bos
                and member.get("heldout_sequences", 0) == self.heldout_sequences)

    def evaluation_cache(self, cache: Any) -> Any:
        """The part of the filled cache every metric is measured on: the held-out sequences, if any."""
        return cache.part(self.training_sequences, self.sequences) if self.heldout_sequences else cache

    def check_reachable(self) -> None:
        """Offline, a `dataset:` corpus must already be in the hub cache: said before the model pass."""
        if not self.dataset or self.dataset_files:  # hub files: the profile's needs say what is missing
            return
        from huggingface_hub import constants

        from l0eval.downstream.saebench_probing import cached_on_hub

        if constants.is_offline_mode() and not cached_on_hub(self.dataset):
            raise SpecError(f"dataset '{self.dataset}' is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) "
                            "and HF_HUB_OFFLINE is set: run once with network access to cache it")

    def missing_inputs(self) -> list[str]:
        from l0eval.activations.llm import hub_inputs

        return hub_inputs.missing(self)

    def download(self) -> Iterator[str]:
        from l0eval.activations.llm import hub_inputs
        from l0eval.family.profiles import model_profiles

        yield from hub_inputs.fetch(self)
        profile = model_profiles().get(self.profile)
        if profile is not None and profile.probing:  # sae-probes' datasets ship in its wheel; SAEBench's do not
            from l0eval.downstream.saebench_probing import prefetch_hub_datasets

            yield from prefetch_hub_datasets()

    def training_inputs(self, device: str, progress: bool) -> tuple[Any, bool]:
        """The activation cache (filled if needed) `l0eval train` trains on, and whether to leave BOS out."""
        from l0eval.activations.llm.pipeline import activation_cache

        cache = activation_cache(self, device, progress)[1]
        return (cache.part(0, self.training_sequences) if self.heldout_sequences else cache), self.exclude_bos


ACTIVATION_KEYS = {"model", "hook", "texts", "dataset", "sae_probes_datasets", "split", "field", "context",
                   "sequences", "prepend_bos", "exclude_bos", "batch_sequences", "ce_sequences", "heldout_sequences",
                   "model_dtype", "revision", "dataset_files", "dataset_revision"}
# held-out sequences (issue 15) and the model-profile fields (issue 17), at the value older files implied
_LATER_FIELD_DEFAULTS = {"heldout_sequences": 0, "revision": "main", "dataset_files": (), "dataset_revision": "main",
                         "profile": ""}
MODEL_DTYPES = ("float32", "bfloat16", "float16")
_SOURCES = ("texts", "dataset", "sae_probes_datasets")


def parse_llm_activations(raw: Any, base: Path, default_hook: str, default_model: str = "",
                          profile: str = "") -> LLMActivationSpec:
    """The ``activations`` section; ``model`` and ``hook`` default to the family's own."""
    spec = check_keys(raw, ACTIVATION_KEYS, "activations")
    model = spec.get("model", default_model)
    if not model:
        raise SpecError("'activations.model' (or the family's 'model') is required, e.g. smollm2-135m-gguf")
    texts = _string_list(spec, "texts")
    probe_sets = _string_list(spec, "sae_probes_datasets")
    dataset_files = _string_list(spec, "dataset_files")
    if dataset_files and not spec.get("dataset"):
        raise SpecError("'activations.dataset_files' are files of a hub dataset: set 'activations.dataset' too")
    if sum(bool(spec.get(source)) for source in _SOURCES) != 1:
        raise SpecError("'activations' needs exactly one text source: 'texts' (local files), 'dataset' (a HF "
                        "dataset) or 'sae_probes_datasets' (offline, e.g. [100_news_fake])")
    hook = spec.get("hook", default_hook)
    if not hook:
        raise SpecError("'activations.hook' (or the family's 'hook') is required, e.g. blocks.6.hook_resid_post")
    prepend_bos, exclude_bos = _flag(spec, "prepend_bos", True), _flag(spec, "exclude_bos", False)
    if exclude_bos and not prepend_bos:
        raise SpecError("'activations.exclude_bos' needs 'prepend_bos: true' (without a BOS there is nothing to "
                        "exclude)")
    model_dtype = spec.get("model_dtype", "float32")
    if model_dtype not in MODEL_DTYPES:
        raise SpecError(f"'activations.model_dtype' must be one of {', '.join(MODEL_DTYPES)}, got {model_dtype!r}")
    sequences = number(spec.get("sequences", 256), "activations.sequences")
    batch_sequences = number(spec.get("batch_sequences", 8), "activations.batch_sequences")
    heldout = _heldout_sequences(spec, sequences, batch_sequences)
    ce_sequences = number(spec.get("ce_sequences", 16), "activations.ce_sequences", heldout or None)
    return LLMActivationSpec(
        model=str(model), hook=str(hook),
        texts=tuple(str(p if Path(p).is_absolute() else (base / p).resolve()) for p in texts),
        dataset=spec.get("dataset"), sae_probes_datasets=tuple(probe_sets),
        split=str(spec.get("split", "train")), field=str(spec.get("field", "text")),
        context=number(spec.get("context", 128), "activations.context"),
        sequences=sequences, prepend_bos=prepend_bos, exclude_bos=exclude_bos, batch_sequences=batch_sequences,
        ce_sequences=ce_sequences, heldout_sequences=heldout, model_dtype=model_dtype,
        revision=_revision(spec, "revision"), dataset_files=tuple(dataset_files),
        dataset_revision=_revision(spec, "dataset_revision"), profile=profile,
    )


def _revision(spec: dict, key: str) -> str:
    value = spec.get(key, "main")
    if not isinstance(value, str) or not value:
        raise SpecError(f"'activations.{key}' must be a hub revision (a branch, tag or commit), got {value!r}")
    return value


def _heldout_sequences(spec: dict, sequences: int, batch_sequences: int) -> int:
    """The held-out part starts on a cache shard boundary (shards of ``batch_sequences``), leaving at least one
    shard to train on."""
    if "heldout_sequences" not in spec:
        return 0
    heldout = number(spec["heldout_sequences"], "activations.heldout_sequences", max(0, sequences - batch_sequences))
    if heldout and (sequences - heldout) % batch_sequences:
        raise SpecError(f"'activations.heldout_sequences' must leave a multiple of 'activations.batch_sequences' "
                        f"({batch_sequences}, the cache's shard size) to train on, got {heldout} of {sequences}")
    return heldout


def _flag(spec: dict, key: str, default: bool) -> bool:
    value = spec.get(key, default)
    if not isinstance(value, bool):
        raise SpecError(f"'activations.{key}' must be true or false")
    return value


def _string_list(spec: dict, key: str) -> list[str]:
    values = spec.get(key, [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise SpecError(f"'activations.{key}' must be a list of strings")
    return values


def parse_llm_source(raw: Any, context: SourceContext) -> LLMActivationSpec:
    """``activations: {llm: {...}}``, or the corpus written inline (``activations: {model, hook, texts, ...}``)."""
    return parse_llm_activations(raw, context.base, context.hook, context.model)
