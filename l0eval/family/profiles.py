"""Model profiles: how a hub registry family's model runs (its hub id, corpus, context, dtypes, batches,
downstream metrics), read from ``model_profiles.yaml`` beside the registry.

A registry family inherits the profile its ``model`` names; its registry entry's ``activations`` mapping, then
``--activations KEY=VALUE`` on the command line, override any field. The merged mapping is parsed exactly as a
family file's ``activations`` section (``l0eval.family.llm_spec``), so every key and value is checked there,
and an unknown key is a one-line error. Stays light (no torch): listing families must be instant.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from l0eval.errors import SpecError
from l0eval.family.llm_spec import ACTIVATION_KEYS, LLMActivationSpec, parse_llm_activations
from l0eval.family.validation import check_keys
from l0eval.family.yaml_file import read_yaml_file

PROFILES_FILE = Path(__file__).parent / "model_profiles.yaml"
DEVICES = ("cpu", "cuda")  # a per-device value is {cpu: ..., cuda: ...}; cuda:N reads `cuda`
_PROFILE_KEYS = {"description", "activations", "downstream"}
_DOWNSTREAM_KEYS = {"probing", "absorption"}


@dataclass(frozen=True)
class ModelProfile:
    name: str
    description: str
    activations: dict[str, Any]  # keys of an LLM `activations` section; values may be per device
    probing: bool = True
    absorption: bool = True

    def disabled_metrics(self) -> dict[str, str]:
        """Downstream metrics the profile leaves out, with the reason a results file records."""
        return {metric: f"model profile '{self.name}' ({PROFILES_FILE.name}) disables it"
                for metric, enabled in (("probing", self.probing), ("absorption", self.absorption)) if not enabled}


def device_kind(device: str) -> str:
    """``cuda:1`` -> ``cuda``."""
    return device.split(":")[0]


def for_device(raw: dict[str, Any], device: str, where: str) -> dict[str, Any]:
    """``raw`` with each per-device value ({cpu: ..., cuda: ...}) replaced by the one for ``device``."""
    resolved = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            check_keys(value, set(DEVICES), f"{where}.{key}", required=set(DEVICES))
            value = value[device_kind(device)]
        resolved[key] = value
    return resolved


def _parse_profile(name: str, raw: Any) -> ModelProfile:
    where = f"profiles.{name}"
    check_keys(raw, _PROFILE_KEYS, where, required={"activations"})
    downstream = check_keys(raw.get("downstream", {}), _DOWNSTREAM_KEYS, f"{where}.downstream")
    for key, value in downstream.items():
        if not isinstance(value, bool):
            raise SpecError(f"'{where}.downstream.{key}' must be true or false, got {value!r}")
    if not isinstance(raw["activations"], dict):
        raise SpecError(f"'{where}.activations' must be a mapping")
    profile = ModelProfile(name=name, description=str(raw.get("description", "")), activations=raw["activations"],
                           **downstream)
    for device in DEVICES:  # every device's activations parse, with a placeholder hook (registry entries give it)
        profiled_activations(profile, "blocks.0.hook_resid_post", device)
    return profile


@cache
def model_profiles() -> dict[str, ModelProfile]:
    """The shipped profiles by model name, each checked as strictly as a family file's activations."""
    raw = check_keys(read_yaml_file(PROFILES_FILE), {"profiles"}, "", required={"profiles"})["profiles"]
    try:
        if not isinstance(raw, dict):
            raise SpecError("'profiles' must be a mapping of model name to profile")
        return {str(name): _parse_profile(str(name), profile) for name, profile in raw.items()}
    except SpecError as exc:
        raise SpecError(f"{PROFILES_FILE}: {exc}") from exc


def profiled_activations(profile: ModelProfile, hook: str, device: str,
                         *overrides: dict[str, Any]) -> LLMActivationSpec:
    """The profile's activations on ``device``, with ``overrides`` applied in order (later ones win)."""
    merged = for_device(profile.activations, device, f"profiles.{profile.name}.activations")
    for override in overrides:
        merged.update(for_device(override, device, "activations"))
    return parse_llm_activations(merged, Path.cwd(), hook, profile=profile.name)


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``--activations KEY=VALUE ...``: each VALUE read as YAML (``sequences=64``, ``dataset_files=[a.jsonl]``)."""
    overrides: dict[str, Any] = {}
    for pair in pairs or ():
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise SpecError(f"--activations takes KEY=VALUE pairs, got {pair!r}")
        try:
            check_keys({key: value}, ACTIVATION_KEYS, "")  # the family file's "did you mean" for a typo
        except SpecError as exc:
            raise SpecError(f"--activations: {exc}") from None
        if key in overrides:
            raise SpecError(f"--activations sets '{key}' twice")
        try:
            overrides[key] = yaml.safe_load(value) if value else value
        except yaml.YAMLError as exc:
            raise SpecError(f"--activations {key}: cannot read {value!r} ({type(exc).__name__})") from exc
    return overrides


def downstream_for(spec: LLMActivationSpec, config: Any, profiles: dict[str, ModelProfile] | None = None) -> Any:
    """``config`` (a ``DownstreamConfig``) without the metrics the spec's profile (in ``profiles``, default the
    shipped ones) disables, unless the user named them with --metrics."""
    profile = (model_profiles() if profiles is None else profiles).get(spec.profile)
    if profile is None or config.explicit:
        return config
    disabled = {metric: why for metric, why in profile.disabled_metrics().items() if config.wants(metric)}
    if not disabled:
        return config
    return replace(config, metrics=tuple(m for m in config.metrics if m not in disabled),
                   skipped={**config.skipped, **disabled})
