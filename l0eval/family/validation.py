"""Strict parsing of family files and the hub registry, with every constraint declared once.

``FIELDS`` declares, by key path (``[]`` for a list's items), the constraint on every number a family file
(toy spec, ``kind: saes``, LLM activations) or the shipped registry holds, in the spirit of scikit-learn's
``_param_validation``: the parsers look their constraints up here, and the invalid-value tests are
generated from this table. Every check raises a one-line ``SpecError`` naming the exact key path; an
unknown key says which known key it probably meant.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any

from l0eval.errors import SpecError

# Family names become file and folder names (results/<name>.json, cache folders): a safe, short pattern
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class Interval:
    """A declared numeric constraint: integer or real, finite, within [low, high] (either end may be open)."""

    integer: bool = False
    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def check(self, value: Any, where: str, high: float | None = None) -> Any:
        """``value`` if it satisfies the constraint (``high`` tightens the declared upper bound), else SpecError."""
        ok_types = (int,) if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_types):
            raise SpecError(f"'{where}' must be {'an integer' if self.integer else 'a number'}, got {value!r}")
        if not math.isfinite(value):
            raise SpecError(f"'{where}' must be a finite number, got {value!r}")
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise SpecError(f"'{where}' must be {'>' if self.low_open else '>='} {self.low}, got {value!r}")
        bounds = [bound for bound in (self.high, high) if bound is not None]
        if bounds and value > min(bounds):
            raise SpecError(f"'{where}' must be <= {min(bounds)}, got {value!r}")
        return value

    def invalid_values(self) -> list[Any]:
        """Values the constraint must reject: wrong types, non-finite numbers and values beyond its bounds."""
        values: list[Any] = ["1", True, float("nan"), float("inf")]
        if self.integer:
            values.append(1.5)
        if self.low is not None:
            values.append(self.low if self.low_open else self.low - 1)
        if self.high is not None:
            values.append(self.high + 1)
        return values


POSITIVE_INT = Interval(integer=True, low=1)
NON_NEGATIVE_INT = Interval(integer=True, low=0)
ANY_INT = Interval(integer=True)
POSITIVE = Interval(low=0.0, low_open=True)
NON_NEGATIVE = Interval(low=0.0)
PROBABILITY = Interval(low=0.0, high=1.0, low_open=True)  # a firing probability: (0, 1]
FRACTION = Interval(low=0.0, high=1.0)
CORRELATION = Interval(low=-1.0, high=1.0)

FIELDS: dict[str, Interval] = {
    # toy specs (l0eval/family/toy_spec.py)
    "toy.n_features": POSITIVE_INT,
    "toy.d_model": POSITIVE_INT,
    "toy.probabilities[]": PROBABILITY,
    "toy.probabilities.constant": PROBABILITY,
    "toy.probabilities.linear.high": PROBABILITY,
    "toy.probabilities.linear.low": PROBABILITY,
    "toy.correlation.star.rho": CORRELATION,
    "toy.correlation.star.feature": NON_NEGATIVE_INT,
    "toy.correlation.random.seed": ANY_INT,
    "toy.correlation.random.positive_ratio": FRACTION,
    "toy.correlation.random.strength[]": FRACTION,
    "toy.correlation.random.sparsity": FRACTION,
    "toy.magnitude.mean": POSITIVE,
    "toy.magnitude.std": NON_NEGATIVE,
    "toy.embedding.seed": ANY_INT,
    "toy.embedding.steps": NON_NEGATIVE_INT,
    "sae.d_sae": POSITIVE_INT,
    "sae.k[]": POSITIVE,
    "sae.k.range[]": POSITIVE_INT,
    "training.samples": POSITIVE_INT,
    "training.batch_size": POSITIVE_INT,
    "training.lr": POSITIVE,
    "training.seeds[]": NON_NEGATIVE_INT,
    "training.data_seed": NON_NEGATIVE_INT,
    "training.dead_feature_window": POSITIVE_INT,
    "training.aux_loss_coefficient": NON_NEGATIVE,
    "evaluation.samples": POSITIVE_INT,
    "evaluation.seed": NON_NEGATIVE_INT,
    "evaluation.n_values[]": POSITIVE_INT,
    "selectors.snd_n[]": POSITIVE_INT,
    "selectors.canonical_target": POSITIVE,
    "mixing.rho[]": CORRELATION,
    "mixing.feature": NON_NEGATIVE_INT,
    # `kind: synthetic` family files (l0eval/activations/synthetic.py; the other sections are the toys')
    "world.sample_chunk": POSITIVE_INT,
    # `kind: saes` family files (l0eval/family/registry.py) and their LLM activations (llm_spec.py)
    "d_in": POSITIVE_INT,
    "width": NON_NEGATIVE_INT,
    "members[].nominal_l0": POSITIVE,
    "members[].seed": NON_NEGATIVE_INT,
    "activations.context": Interval(integer=True, low=2),
    "activations.sequences": POSITIVE_INT,
    "activations.batch_sequences": POSITIVE_INT,
    "activations.ce_sequences": NON_NEGATIVE_INT,
    "activations.heldout_sequences": NON_NEGATIVE_INT,
    # the shipped hub registry (l0eval/family/registry.yaml)
    "families[].d_in": POSITIVE_INT,
    "families[].width": POSITIVE_INT,
    "families[].layer": NON_NEGATIVE_INT,
    "families[].trainers[]": NON_NEGATIVE_INT,
    "families[].nominal_l0[]": POSITIVE,
    "families[].l0[]": POSITIVE,
    "families[].seeds[]": NON_NEGATIVE_INT,
    "families[].folders[].l0": POSITIVE,
}


def declared(where: str) -> Interval:
    """The constraint declared for key path ``where`` (list indices written as ``[]``)."""
    return FIELDS[re.sub(r"\[\d+\]", "[]", where)]


def number(value: Any, where: str, high: float | None = None) -> Any:
    """``value`` checked against the constraint ``FIELDS`` declares for ``where``."""
    return declared(where).check(value, where, high)


def number_list(value: Any, where: str, high: float | None = None) -> tuple:
    if not isinstance(value, list) or not value:
        raise SpecError(f"'{where}' must be a non-empty list, got {value!r}")
    return tuple(number(item, f"{where}[{i}]", high) for i, item in enumerate(value))


def family_name(value: Any, where: str = "name") -> str:
    if isinstance(value, str) and len(value) > 100:  # said by its length: echoing it would flood the line
        raise SpecError(f"'{where}' must be at most 100 characters (it becomes a file name), "
                        f"got {len(value)} characters")
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise SpecError(f"'{where}' must be 1-100 letters, digits, '.', '_' or '-' starting with a letter or "
                        f"digit (it becomes a file name), got {value!r}")
    return value


def check_keys(mapping: Any, allowed: set[str], where: str, required: set[str] = frozenset()) -> dict:
    if not isinstance(mapping, dict):
        raise SpecError(f"{where or 'spec'} must be a mapping, got {type(mapping).__name__}")
    for key in mapping:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else f" (allowed: {', '.join(sorted(allowed))})"
            raise SpecError(f"unknown key '{_join(where, key)}'{suggestion}")
    for key in sorted(required):
        if key not in mapping:
            raise SpecError(f"missing required key '{_join(where, key)}'")
    return mapping


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)
