"""Activation sources by the key that names them in a family file's ``activations`` section.

A source is one module: an ``l0eval.family.model.ActivationSource`` subclass and a parser
``parse(value, context) -> ActivationSource``, registered once with ``register_activation_source(key,
parse)``, or listed in ``BUILT_IN`` as ``"module:function"`` so that it is imported only when a family
uses it. ``activations: {KEY: VALUE}`` then selects it; a mapping that names no registered key is an
LLM corpus written inline (``{model, hook, texts | dataset, ...}``), the format family files had first.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l0eval.errors import SpecError
from l0eval.family.model import ActivationSource


@dataclass(frozen=True)
class SourceContext:
    """What a source parser may need from the family file around it."""

    base: Path  # the family file's folder (relative paths are read from it)
    hook: str  # the family's top-level ``hook`` (an LLM corpus's default hook)
    model: str  # the family's top-level ``model``
    where: str = "activations"  # key path, for error messages


Parser = Callable[[Any, SourceContext], ActivationSource]

# Sources shipped with l0eval, imported on first use ("module:function" of the parser)
BUILT_IN = {
    "toy": "l0eval.family.toy_family:parse_toy_activations",
    "llm": "l0eval.family.llm_spec:parse_llm_source",
    "synthetic": "l0eval.family.synthetic_family:parse_synthetic_activations",
}

_REGISTERED: dict[str, Parser | str] = dict(BUILT_IN)

# An activations mapping without a registered key is this source's value, written inline
INLINE = "llm"


def register_activation_source(key: str, parse: Parser | str) -> None:
    """Make ``activations: {key: ...}`` in a family file build a source with ``parse``."""
    if key in _REGISTERED and _REGISTERED[key] != parse:
        raise ValueError(f"activation source '{key}' is already registered")
    _REGISTERED[key] = parse


def registered_sources() -> list[str]:
    return sorted(_REGISTERED)


def _parser(key: str) -> Parser:
    parse = _REGISTERED[key]
    if isinstance(parse, str):
        module, function = parse.split(":")
        parse = getattr(importlib.import_module(module), function)
    return parse


def parse_activations(raw: Any, context: SourceContext) -> ActivationSource | None:
    """The source a family file's ``activations`` section names (None when it has none)."""
    if not raw:
        return None
    if not isinstance(raw, dict):
        raise SpecError(f"'{context.where}' must be a mapping, got {type(raw).__name__}")
    named = [key for key in raw if key in _REGISTERED]
    if not named:
        return _parser(INLINE)(raw, context)
    if len(raw) != 1:
        extra = sorted(set(raw) - {named[0]})
        raise SpecError(f"'{context.where}' names source '{named[0]}' and also has {', '.join(map(repr, extra))}: "
                        "give one source per family")
    key = named[0]
    return _parser(key)(raw[key], SourceContext(context.base, context.hook, context.model,
                                                 f"{context.where}.{key}"))
