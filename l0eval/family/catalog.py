"""Every family l0eval knows, by name or file: built-in toys, the hub registry, user YAML files.

``resolve`` returns a ``FamilySpec`` (toys, which l0eval trains) or an ``SAEFamily`` (existing SAEs,
which l0eval loads). Listing stays light: no torch, no sae-lens import.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from l0eval.errors import SpecError
from l0eval.family.readiness import needs_text, run_needs
from l0eval.family.registry import (
    SAEFamily,
    hub_families,
    members_from_sae_lens_release,
    parse_sae_family,
    sae_lens_releases,
)
from l0eval.family.synthetic_spec import KIND as SYNTHETIC
from l0eval.family.synthetic_spec import SyntheticFamilySpec, parse_synthetic_family
from l0eval.family.toy_spec import BUILTIN_DIR, FamilySpec, builtin_family_names, load_family_file, read_yaml_file
from l0eval.saes.hub_cache import is_cached

# Gemma-Scope-style ids, where every member of a (layer, width) group differs only in L0
_GENERATED_ID = re.compile(r"^(layer_\d+/width_\w+)/average_l0_(\d+)$")


def generated_families() -> dict[str, SAEFamily]:
    """Families made from SAELens releases whose ids differ only by ``average_l0_N`` (3+ members)."""
    families = {}
    for release, info in sae_lens_releases().items():
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
            width = _width(prefix)
            families[name] = SAEFamily(name=name, description=f"{release} {prefix}", model=info["model"],
                                       hook=f"layer {layer}", d_in=0, width=width, architecture="jumprelu",
                                       source="sae_lens_release", members=members, layer=layer)
    return families


def _width(prefix: str) -> int:
    label = re.search(r"width_(\d+)([km]?)", prefix)
    return int(label.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[label.group(2)]


def resolve(name_or_path: str) -> FamilySpec | SAEFamily | SyntheticFamilySpec:
    """A built-in toy, a hub registry family, a generated SAELens family, or a family YAML file."""
    if name_or_path in builtin_family_names():
        return _load_file(BUILTIN_DIR / f"{name_or_path}.yaml")
    if name_or_path in hub_families():
        return hub_families()[name_or_path]
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return _load_file(path)
    if "/" in name_or_path and name_or_path in (generated := generated_families()):
        return generated[name_or_path]
    known = builtin_family_names() + list(hub_families())
    hint = difflib.get_close_matches(name_or_path, known, n=1)
    suggestion = f"; did you mean '{hint[0]}'?" if hint else "; `l0eval families` lists them"
    raise SpecError(f"unknown family '{name_or_path}'{suggestion}")


def _load_file(path: Path) -> FamilySpec | SAEFamily | SyntheticFamilySpec:
    raw = read_yaml_file(path)
    kind = raw.get("kind") if isinstance(raw, dict) else None
    parsers = {"saes": lambda: parse_sae_family(raw, path), SYNTHETIC: lambda: parse_synthetic_family(raw, str(path))}
    if kind in parsers:
        try:
            return parsers[kind]()
        except SpecError as exc:
            raise SpecError(f"{path}: {exc}") from exc
    return load_family_file(path, raw)


def _size(num_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if num_bytes < 1000:
            return f"{num_bytes:.3g} {unit}"
        num_bytes /= 1000
    return f"{num_bytes:.0f} PB"


def _l0_text(l0_range: tuple[float, float] | None) -> str:
    return f"{l0_range[0]:g}-{l0_range[1]:g}" if l0_range else "from config"


def family_table(include_generated: bool = False) -> str:
    """One line per family: name, model, layer, width, architecture, #L0s, L0 range, size, cached."""
    header = f"{'name':44s} {'model':20s} {'layer':>5s} {'width':>7s} {'arch':10s} {'#L0':>4s} {'L0 range':>10s} " \
             f"{'download':>9s} cached"
    lines = [header, "-" * len(header)]
    families = {}
    for name in builtin_family_names():
        spec = resolve(name)
        if isinstance(spec, SAEFamily):
            families[name] = spec
            continue
        lines.append(f"{name:44s} {spec.kind if spec.kind == SYNTHETIC else 'toy':20s} {'-':>5s} "
                     f"{spec.sae.d_sae:>7d} {'batchtopk':10s} "
                     f"{len(spec.sae.k_values):>4d} {_l0_text((min(spec.sae.k_values), max(spec.sae.k_values))):>10s} "
                     f"{'-':>9s} trains")
    families.update(hub_families())
    if include_generated:
        families.update(generated_families())
    for name, family in families.items():
        cached = sum(is_cached(m) for m in family.members)
        size = _size(family.download_bytes) if family.d_in else "?"
        l0s = _l0_text(family.l0_range())
        lines.append(f"{name:44s} {family.model:20s} {str(family.layer):>5s} {family.width:>7d} "
                     f"{family.architecture:10s} {len(family.members):>4d} {l0s:>10s} {size:>9s} "
                     f"{cached}/{len(family.members)}")
    return "\n".join(lines + _needs_footer(families))


def _needs_footer(families: dict[str, SAEFamily]) -> list[str]:
    """Per family whose run cannot start yet, what it lacks and the command that gets it; one line for the
    hub families, which download on their first run."""
    blocked = [line for name, family in families.items()
               for line in needs_text(name, [need for need in run_needs(family) if need.blocking])]
    downloads = any(not need.blocking for family in families.values() for need in run_needs(family))
    lines = ["", "needed before `l0eval run`:", *(f"  {line}" for line in blocked)] if blocked else []
    if downloads:
        lines += ["", "families not cached download their SAEs on the first `l0eval run`; "
                      "`l0eval download --family NAME` fetches and checks them ahead"]
    return lines


def member_table(family: FamilySpec | SAEFamily | SyntheticFamilySpec) -> str:
    if isinstance(family, SyntheticFamilySpec):
        ks = ", ".join(f"{k:g}" for k in family.sae.k_values)
        config = family.world.config
        world = family.world.hub or f"{config.num_features} features, hidden {config.hidden_dim}"
        return (f"{family.name} (synthetic world: {world}): {family.description}\nk = {ks}; "
                f"seeds {list(family.training.seeds)}; trained by l0eval")
    if isinstance(family, FamilySpec):
        ks = ", ".join(f"{k:g}" for k in family.sae.k_values)
        return (f"{family.name} ({family.kind}): {family.description}\ntrue L0 {family.toy.true_l0:.4f}; "
                f"k = {ks}; seeds {list(family.training.seeds)}; trained by l0eval")
    lines = [f"{family.name}: {family.description}",
             f"model {family.model}, hook {family.hook}, d_in {family.d_in}, width {family.width}, "
             f"{family.architecture}, source {family.source}", ""]
    for member in family.members:
        where = member.path if member.is_local else f"{member.release or member.repo_id}:{member.path}"
        l0 = "-" if member.nominal_l0 is None else f"{member.nominal_l0:g}"
        lines.append(f"  {member.id:36s} nominal L0 {l0:>6s}  {'cached' if is_cached(member) else 'not cached':10s} "
                     f"{where}")
    needs = needs_text(family.name, run_needs(family))
    return "\n".join(lines + (["", "needed before `l0eval run`:", *(f"  {line}" for line in needs)] if needs else []))
