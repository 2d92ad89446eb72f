"""SAE families that already exist: the shipped hub registry, SAELens release metadata, user YAML files.

A family is a typed object (``SAEFamily``) whatever its source; its members say where their weights
live and in which format, and ``l0eval.saes.loaders`` turns each into a sae-lens SAE.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from l0eval.errors import SpecError
from l0eval.family.validation import check_keys, number
from l0eval.saes import store

HUB_REGISTRY = Path(__file__).parent / "registry.yaml"

FORMATS = ("sae_lens", "dictionary_learning", "gemma_scope", "sae_lens_release")


@dataclass(frozen=True)
class Member:
    """One SAE of a family and where it lives: a hub repo folder, a SAELens release id, or a local folder."""

    id: str
    nominal_l0: float | None
    format: str  # one of FORMATS
    path: str  # folder inside the repo, or a local folder when repo_id and release are None
    repo_id: str | None = None
    release: str | None = None  # sae-lens release name (format "sae_lens_release")
    converter: str | None = None  # the release's sae-lens conversion_func (None: native SAELens format)
    trained_here: bool = False  # filled in by `l0eval train` on this family's activations
    training: dict[str, Any] | None = field(default=None, compare=False, hash=False)  # how, for trained_here
    cfg_overrides: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_local(self) -> bool:
        return self.repo_id is None and self.release is None


@dataclass(frozen=True)
class SAEFamily:
    name: str
    description: str
    model: str
    hook: str
    d_in: int
    width: int
    architecture: str
    source: str
    members: tuple[Member, ...]
    layer: int | None = None
    activations: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    spec_path: str = ""
    build: str = ""  # the command that creates the members (family files' `build:`), for `l0eval families`

    @property
    def download_bytes(self) -> int:
        """fp32 W_enc + W_dec + biases per member: what the hub download costs, roughly."""
        return 4 * (2 * self.d_in * self.width + self.width + self.d_in) * len(self.members)

    def l0_range(self) -> tuple[float, float] | None:
        known = [m.nominal_l0 for m in self.members if m.nominal_l0 is not None]
        return (min(known), max(known)) if known else None


def _members_from_trainers(raw: dict, name: str) -> tuple[Member, ...]:
    trainers = raw["trainers"]
    nominal = raw.get("nominal_l0", [None] * len(trainers))
    if len(nominal) != len(trainers):
        raise SpecError(f"family {name}: nominal_l0 has {len(nominal)} entries for {len(trainers)} trainers")
    return tuple(Member(id=f"trainer_{i}", nominal_l0=None if l0 is None else float(l0), format=raw["source"],
                        path=raw["path"].format(i=i), repo_id=raw["repo_id"])
                 for i, l0 in zip(trainers, nominal))


@cache
def sae_lens_releases() -> dict[str, dict]:
    """sae-lens's ``pretrained_saes.yaml``, the metadata behind ``SAE.from_pretrained``, by release.

    Read from the installed package's file rather than through ``get_pretrained_saes_directory``:
    importing sae_lens costs ~5 s (torch, transformer-lens), and listing families must stay instant.
    """
    package_dir = importlib.util.find_spec("sae_lens").submodule_search_locations[0]
    with open(Path(package_dir) / "pretrained_saes.yaml") as handle:
        return yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def members_from_sae_lens_release(release: str, id_regex: str) -> tuple[Member, ...]:
    """Members of a SAELens release whose ids match ``id_regex``; the first regex group (else the
    release's ``l0`` metadata) is the nominal L0. Sorted by nominal L0."""
    info = sae_lens_releases().get(release)
    if info is None:
        raise SpecError(f"sae-lens has no release '{release}'")
    pattern = re.compile(id_regex)
    members = []
    for entry in info["saes"]:
        match = pattern.search(entry["id"])
        if match is None:
            continue
        l0 = float(match.group(1)) if match.groups() else entry.get("l0")
        members.append(Member(id=entry["id"], nominal_l0=None if l0 is None else float(l0),
                              format="sae_lens_release", path=str(entry["path"]), repo_id=info["repo_id"],
                              release=release, converter=info.get("conversion_func")))
    if not members:
        raise SpecError(f"no id of sae-lens release '{release}' matches {id_regex!r}")
    return tuple(sorted(members, key=lambda m: (m.nominal_l0 is None, m.nominal_l0)))


def _family_from_registry_entry(raw: dict) -> SAEFamily:
    name = raw["name"]
    if raw["source"] == "sae_lens_release":
        members = members_from_sae_lens_release(raw["release"], raw["id_regex"])
    else:
        members = _members_from_trainers(raw, name)
    return SAEFamily(name=name, description=raw["description"], model=raw["model"], hook=raw["hook"],
                     d_in=raw["d_in"], width=raw["width"], architecture=raw["architecture"],
                     source=raw["source"], members=members, layer=raw.get("layer"))


@cache
def hub_families() -> dict[str, SAEFamily]:
    """The registry shipped in ``l0eval/family/registry.yaml``, by name."""
    entries = yaml.safe_load(HUB_REGISTRY.read_text())["families"]
    families = {}
    for raw in entries:
        if raw["name"] in families:
            raise SpecError(f"{HUB_REGISTRY}: family '{raw['name']}' is listed twice")
        families[raw["name"]] = _family_from_registry_entry(raw)
    return families


# ---------------------------------------------------------------------------------------------
# User-defined SAE families (kind: saes)

_MEMBER_KEYS = {"id", "path", "repo_id", "release", "format", "nominal_l0", "cfg_overrides"}


def _parse_member(raw: Any, index: int, base: Path) -> Member:
    where = f"members[{index}]"
    member = check_keys(raw, _MEMBER_KEYS, where, required={"path"})
    repo_id, release = member.get("repo_id"), member.get("release")
    default_format = "sae_lens_release" if release else "sae_lens"
    fmt = member.get("format", default_format)
    if fmt not in FORMATS:
        raise SpecError(f"'{where}.format' must be one of {', '.join(FORMATS)}, got {fmt!r}")
    path = str(member["path"])
    if repo_id is None and release is None:
        path = str((base / path).resolve())  # an absolute path stays itself
        if fmt != "sae_lens":
            raise SpecError(f"'{where}': a local folder must be in SAELens format (cfg.json + "
                            "sae_weights.safetensors)")
    nominal = member.get("nominal_l0")
    if nominal is not None:
        nominal = float(number(nominal, f"{where}.nominal_l0", low=0.0, low_open=True))
    overrides = member.get("cfg_overrides", {})
    if not isinstance(overrides, dict):
        raise SpecError(f"'{where}.cfg_overrides' must be a mapping")
    return Member(id=str(member.get("id", Path(path).name)), nominal_l0=nominal, format=fmt, path=path,
                  repo_id=repo_id, release=release, cfg_overrides=overrides)


def _parse_activations(raw: Any, base: Path, hook: str, model: str) -> dict[str, Any]:
    """``{toy: NAME}`` (a toy's data) or an LLM corpus (``{model, hook, texts | dataset, ...}``)."""
    if isinstance(raw, dict) and "toy" in raw:
        return check_keys(raw, {"toy"}, "activations")
    if not raw:
        return {}
    from l0eval.family.llm_spec import parse_llm_activations

    return {"llm": parse_llm_activations(raw, base, hook, model)}


def _trained_on(member: dict, activations: dict) -> bool:
    """Whether a trained-here member was trained on the positions the family now evaluates: after the
    family file switches ``exclude_bos``, SAEs trained the other way are left out (and `l0eval train`
    makes new ones). Members recorded before the option existed were trained with BOS."""
    llm = activations.get("llm")
    return llm is None or member.get("exclude_bos", False) == llm.exclude_bos


def parse_sae_family(raw: Any, source_path: Path) -> SAEFamily:
    """A user family (``kind: saes``): members in local folders, hub repos or SAELens releases."""
    top = check_keys(raw, {"name", "kind", "description", "model", "hook", "d_in", "width", "architecture",
                            "members", "activations", "build"}, "", required={"name", "kind", "d_in", "members"})
    if not isinstance(top["members"], list):
        raise SpecError("'members' must be a list (it may be empty when `l0eval train` fills the family)")
    members = tuple(_parse_member(m, i, source_path.parent) for i, m in enumerate(top["members"]))
    if len({m.id for m in members}) != len(members):
        raise SpecError("member ids must be unique (set 'id' where folder names repeat)")
    activations = _parse_activations(top.get("activations", {}), source_path.parent, str(top.get("hook", "")),
                                     str(top.get("model", "")))
    members += tuple(Member(id=f"trained_{Path(m['path']).name}", nominal_l0=m["nominal_l0"], format="sae_lens",
                            path=m["path"], trained_here=True,
                            training={key: value for key, value in m.items() if key not in ("path", "nominal_l0")})
                     for m in store.trained_members(str(top["name"])) if _trained_on(m, activations))
    return SAEFamily(name=str(top["name"]), description=str(top.get("description", "")),
                     model=str(top.get("model", "")), hook=str(top.get("hook", "")),
                     d_in=number(top["d_in"], "d_in", integer=True, low=1),
                     width=number(top.get("width", 0), "width", integer=True, low=0),
                     architecture=str(top.get("architecture", "")), source="user", members=members,
                     activations=activations, spec_path=str(source_path), build=str(top.get("build", "")))
