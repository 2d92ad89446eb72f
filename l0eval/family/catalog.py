"""Every family l0eval knows, by name or file: built-in toys, the hub registry, user YAML files.

``resolve`` returns a ``Family`` whatever the source; the members `l0eval train` added to a family of
loaded SAEs are merged here, where the family is resolved (parsing reads only the file). Listing stays
light: no torch, no sae-lens import.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import replace
from pathlib import Path

from l0eval.errors import SpecError
from l0eval.family.model import Family
from l0eval.family.readiness import hub_offline, needs_text, run_needs
from l0eval.family.registry import (
    LoadedSAEs,
    hub_families,
    hub_family,
    loaded_family,
    members_from_sae_lens_release,
    parse_sae_family,
    sae_lens_releases,
)
from l0eval.family.synthetic_family import synthetic_family
from l0eval.family.synthetic_spec import KIND as SYNTHETIC
from l0eval.family.synthetic_spec import parse_synthetic_family
from l0eval.family.toy_family import toy_family
from l0eval.family.toy_spec import BUILTIN_DIR, builtin_family_names, load_family_file
from l0eval.family.yaml_file import read_yaml_file
from l0eval.saes import store

# Gemma-Scope-style ids, where every member of a (layer, width) group differs only in L0
_GENERATED_ID = re.compile(r"^(layer_\d+/width_\w+)/average_l0_(\d+)$")


def generated_families() -> dict[str, Family]:
    """Families made from SAELens releases whose ids differ only by ``average_l0_N`` (3+ members), for the
    residual-stream releases only: l0eval reads ``blocks.L.hook_resid_post`` (``activations.llm.hooks``), not
    the MLP-output or attention-z hooks of the ``-mlp``/``-att`` releases."""
    families = {}
    for release, info in sae_lens_releases().items():
        if not _RESIDUAL_RELEASE.search(release):
            continue
        groups: dict[str, int] = {}
        for entry in info["saes"]:
            match = _GENERATED_ID.match(entry["id"])
            if match:
                groups[match.group(1)] = groups.get(match.group(1), 0) + 1
        for prefix, count in groups.items():
            if count < 3:
                continue
            name = f"{release}/{prefix}"
            members = members_from_sae_lens_release(release, f"^{re.escape(prefix)}/average_l0_(\\d+)$")
            layer = int(re.search(r"layer_(\d+)", prefix).group(1))
            saes = LoadedSAEs(members, d_in=0, width=width_of_label(prefix), model=info["model"],
                              hook=f"blocks.{layer}.hook_resid_post", architecture="jumprelu",
                              origin="sae_lens_release", layer=layer)
            families[name] = loaded_family(name, f"{release} {prefix}", saes)
    return families


# Residual-stream releases (Gemma Scope ``-res``, ``-res-canonical`` has no average_l0 ids anyway)
_RESIDUAL_RELEASE = re.compile(r"-res(-|$)")


def width_of_label(prefix: str) -> int:
    """``width_16k`` -> 16384, ``width_65k`` -> 65536, ``width_1m`` -> 1048576: the labels round powers of two
    (65k is 2**16 = 65,536, not 65 * 1024), so the width is the power of two nearest the label."""
    label = re.search(r"width_(\d+)([km]?)", prefix)
    approximate = int(label.group(1)) * {"": 1, "k": 1000, "m": 1000 * 1000}[label.group(2)]
    return 2 ** round(math.log2(approximate))


def resolve(name_or_path: str, device: str = "cpu", activation_overrides: dict | None = None) -> Family:
    """A built-in toy, a hub registry family, a generated SAELens family, or a family YAML file.

    A registry family's activations come from its model profile for ``device`` (l0eval/family/profiles.py),
    with ``activation_overrides`` (``--activations KEY=VALUE``) applied last."""
    if activation_overrides and name_or_path not in hub_families():
        raise SpecError(f"--activations overrides a registry family's model profile; '{name_or_path}' is not a "
                        "registry family: edit the `activations` section of its family file instead")
    return _with_trained_members(_find(name_or_path, device, activation_overrides))


def _find(name_or_path: str, device: str = "cpu", activation_overrides: dict | None = None) -> Family:
    if name_or_path in builtin_family_names():
        return _load_file(BUILTIN_DIR / f"{name_or_path}.yaml")
    if name_or_path in hub_families():
        return hub_family(name_or_path, device, activation_overrides)
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return _load_file(path)
    if "/" in name_or_path and name_or_path in (generated := generated_families()):
        return generated[name_or_path]
    known = builtin_family_names() + list(hub_families())
    hint = difflib.get_close_matches(name_or_path, known, n=1)
    suggestion = f"; did you mean '{hint[0]}'?" if hint else "; `l0eval families` lists them"
    raise SpecError(f"unknown family '{name_or_path}'{suggestion}")


def _with_trained_members(family: Family) -> Family:
    trained = store.trained_members(family.name)
    if not trained:
        return family
    members = family.members.with_trained(trained, family.activations)
    return replace(family, members=members)


def _load_file(path: Path) -> Family:
    raw = read_yaml_file(path)
    kind = raw.get("kind") if isinstance(raw, dict) else None
    parsers = {"saes": lambda: parse_sae_family(raw, path),
               SYNTHETIC: lambda: synthetic_family(parse_synthetic_family(raw, str(path)))}
    if kind in parsers:
        try:
            return parsers[kind]()
        except SpecError as exc:
            raise SpecError(f"{path}: {exc}") from exc
    return toy_family(load_family_file(path, raw))


_COLUMNS = ("model", "layer", "width", "arch", "#L0", "L0 range", "download", "cached")
_WIDTHS = (20, 5, 7, 10, 4, 10, 9, 0)
_RIGHT = {"layer", "width", "#L0", "L0 range", "download"}


def _row(name: str, cells: list[str]) -> str:
    aligned = [f"{cell:>{width}s}" if column in _RIGHT else f"{cell:{width}s}" if width else cell
               for column, cell, width in zip(_COLUMNS, cells, _WIDTHS)]
    return f"{name:44s} " + " ".join(aligned)


def family_table(include_generated: bool = False) -> str:
    """One line per family: name, model, layer, width, architecture, #L0s, L0 range, size, cached."""
    header = _row("name", list(_COLUMNS))
    families = {name: resolve(name) for name in builtin_family_names()}
    families.update(hub_families())
    if include_generated:
        families.update(generated_families())
    lines = [header, "-" * len(header)]
    lines += [_row(name, family.members.table_row(family)) for name, family in families.items()]
    return "\n".join(lines + _needs_footer(families))


def _needs_footer(families: dict[str, Family]) -> list[str]:
    """Per family whose run cannot start yet, what it lacks and the command that gets it; one line for the
    hub families, which download on their first run."""
    needs = {name: run_needs(family) for name, family in families.items()}
    shared: dict[tuple[str, str], list[str]] = {}  # one line for a need many families share
    for name, family_needs in needs.items():
        for need in family_needs:
            if need.blocking and not need.download:
                shared.setdefault((need.what, need.command), []).append(name)
    blocked = [f"{names[0] if len(names) == 1 else _names_text(names)}: {what} -> {command}"
               for (what, command), names in shared.items()]
    lines = ["", "needed before `l0eval run`:", *(f"  {line}" for line in blocked)] if blocked else []
    if any(need.download for family_needs in needs.values() for need in family_needs):
        lines += ["", "families not cached download their SAEs, model and corpus on the first `l0eval run`"
                  + (" (not while HF_HUB_OFFLINE is set)" if hub_offline() else "")
                  + "; `l0eval download --family NAME` fetches and checks them ahead"]
    return lines


def _names_text(names: list[str]) -> str:
    return f"{len(names)} families ({', '.join(names[:2])}{', ...' if len(names) > 2 else ''})"


def describe_family(family: Family) -> str:
    """``l0eval families show``: the family, its members and what its run still needs."""
    needs = needs_text(family.name, run_needs(family))
    return "\n".join([family.members.describe(family)]
                     + (["", "needed before `l0eval run`:", *(f"  {line}" for line in needs)] if needs else []))
