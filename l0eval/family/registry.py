"""Families of SAEs that already exist: the shipped hub registry, SAELens release metadata, user YAML files.

Each is a ``Family`` whose members are ``LoadedSAEs``: every member says where its weights live and in which
format, and ``l0eval.saes.loaders`` turns each into a sae-lens SAE. Parsing reads only the file: the
members `l0eval train` added are merged where the family is resolved (``l0eval.family.catalog``).
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from l0eval.errors import SpecError
from l0eval.family.model import (
    FLOAT_BYTES,
    NO_GROUND_TRUTH,
    ActivationSource,
    EvaluationJob,
    Family,
    MemberInfo,
    MemberSource,
    Obtained,
)
from l0eval.family.sources import SourceContext, parse_activations
from l0eval.family.toy_spec import read_yaml_file
from l0eval.family.validation import check_keys, family_name, number, number_list

HUB_REGISTRY = Path(__file__).parent / "registry.yaml"

FORMATS = ("sae_lens", "dictionary_learning", "gemma_scope", "sae_lens_release")


@dataclass(frozen=True)
class LoadedMember:
    """One SAE of a family and where it lives: a hub repo folder, a SAELens release id, or a local folder."""

    id: str
    nominal_l0: float | None
    format: str  # one of FORMATS
    path: str  # folder inside the repo, or a local folder when repo_id and release are None
    repo_id: str | None = None
    seed: int = 0  # the seed replicate, where the family publishes several per L0 (registry `seeds`)
    release: str | None = None  # sae-lens release name (format "sae_lens_release")
    converter: str | None = None  # the release's sae-lens conversion_func (None: native SAELens format)
    trained_here: bool = False  # filled in by `l0eval train` on this family's activations
    training: dict[str, Any] | None = field(default=None, compare=False, hash=False)  # how, for trained_here
    cfg_overrides: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_local(self) -> bool:
        return self.repo_id is None and self.release is None


# What a loaded family's results record under run.training (its SAEs were not trained by this run)
NOT_TRAINED = {"reused_cache": True, "samples_per_sae": None,
               "note": "SAEs loaded, not trained in this run (trained-here members say how under family.members)"}


def size_text(num_bytes: float) -> str:
    """``1.23 GB``."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if num_bytes < 1000:
            return f"{num_bytes:.3g} {unit}"
        num_bytes /= 1000
    return f"{num_bytes:.0f} PB"


@dataclass(frozen=True)
class LoadedSAEs(MemberSource):
    """Members that already exist: local SAELens folders, hub repos, SAELens releases, and those `l0eval train`
    added to the family (``trained_here``)."""

    saes: tuple[LoadedMember, ...]
    d_in: int
    width: int = 0  # 0: unknown before download (read from each SAE's config)
    model: str = ""
    hook: str = ""
    architecture: str = ""
    origin: str = "user"  # the registry entry's source format, "sae_lens_release" or "user"
    layer: int | None = None
    build: str = ""  # the command that creates the members (family files' `build:`), for `l0eval families`
    verified: bool = True  # registry families: every member folder checked against the published repository

    @property
    def download_bytes(self) -> int:
        """fp32 W_enc + W_dec + biases per member: what the hub download costs, roughly."""
        return FLOAT_BYTES * (2 * self.d_in * self.width + self.width + self.d_in) * len(self.saes)

    def l0_range(self) -> tuple[float, float] | None:
        known = [m.nominal_l0 for m in self.saes if m.nominal_l0 is not None]
        return (min(known), max(known)) if known else None

    def ids(self) -> list[str]:
        return [member.id for member in self.saes]

    def declared_width(self) -> int:
        return self.width

    def obtain(self, family: Family, job: EvaluationJob) -> Obtained:
        from l0eval.saes.loaders import load_family

        saes = load_family(family.name, self.saes, self.d_in, job.device)
        members = [MemberInfo(m.id, m.nominal_l0, seed=m.seed, trained_here=m.trained_here) for m in self.saes]
        return Obtained(saes, members, NOT_TRAINED)

    def subset(self, ids: list[str]) -> MemberSource:
        by_id = {member.id: member for member in self.saes}
        return replace(self, saes=tuple(by_id[member_id] for member_id in ids))

    def member_content(self) -> dict[str, Any]:
        return {member.id: asdict(member) for member in self.saes}

    def estimated_bytes(self, ids: list[str]) -> int:
        """The SAEs' weights plus one 4096-token batch of latent activations (freed SAE by SAE)."""
        by_id = {member.id: member for member in self.saes}
        widths = [self._member_width(by_id[member_id]) for member_id in ids]
        weights = sum(2 * self.d_in * width + width + self.d_in for width in widths)
        return FLOAT_BYTES * (weights + 4096 * max(widths, default=0))

    def _member_width(self, member: LoadedMember) -> int:
        """The family's declared width, else the local folder's cfg.json ``d_sae``; 0 if unknown before download."""
        if self.width:
            return self.width
        cfg = Path(member.path) / "cfg.json"
        if member.is_local and cfg.is_file():
            return int(json.loads(cfg.read_text()).get("d_sae", 0))
        return 0

    def record(self, family: Family, snd_n: list[int]) -> dict[str, Any]:
        activations = {} if family.activations is None else {family.activations.kind: family.activations.record()}
        return {"name": family.name, "kind": "saes", "description": family.description, "d_in": self.d_in,
                "source": self.origin, "activations": activations, "spec_path": family.spec_path,
                "selectors": {"snd_n": snd_n},
                "members": [{"id": m.id, "path": m.path, "repo_id": m.repo_id, "format": m.format,
                             "nominal_l0": m.nominal_l0, "trained_here": m.trained_here,
                             **({"training": m.training} if m.trained_here else {})} for m in self.saes]}

    def content(self, family: Family) -> dict[str, Any]:
        activations = {} if family.activations is None else family.activations.content()
        return {"name": family.name, "d_in": self.d_in, "activations": activations}

    def describe(self, family: Family) -> str:
        from l0eval.saes.hub_cache import is_cached

        lines = [f"{family.name}: {family.description}",
                 f"model {self.model}, hook {self.hook}, d_in {self.d_in}, width {self.width}, "
                 f"{self.architecture}, source {self.origin}",
                 *([] if self.verified else ["member folders follow the publisher's documented layout, not all "
                                             "seen on the hub (verified: false; see docs)"]), ""]
        for member in self.saes:
            where = member.path if member.is_local else f"{member.release or member.repo_id}:{member.path}"
            l0 = "-" if member.nominal_l0 is None else f"{member.nominal_l0:g}"
            lines.append(f"  {member.id:36s} nominal L0 {l0:>6s}  "
                         f"{'cached' if is_cached(member) else 'not cached':10s} {where}")
        return "\n".join(lines)

    def table_row(self, family: Family) -> list[str]:
        from l0eval.saes.hub_cache import is_cached

        l0s = self.l0_range()
        cached = sum(is_cached(m) for m in self.saes)
        layer = "-" if self.layer is None else str(self.layer)
        return [self.model, layer, str(self.width), self.architecture, str(len(self.saes)),
                f"{l0s[0]:g}-{l0s[1]:g}" if l0s else "from config",
                size_text(self.download_bytes) if self.d_in else "?", f"{cached}/{len(self.saes)}"]

    def download(self, family: Family) -> Iterator[str]:
        from l0eval.saes.loaders import load_member

        for member in self.saes:
            sae = load_member(member, self.d_in or None)
            yield (f"{member.id}: {sae.cfg.architecture()} d_in={sae.cfg.d_in} d_sae={sae.cfg.d_sae} "
                   f"nominal L0 {member.nominal_l0 if member.nominal_l0 is not None else '-'}  ok")

    def needs(self, family: Family) -> list:
        from l0eval.family.readiness import loaded_needs

        return loaded_needs(family, self)

    def with_trained(self, trained: list[dict[str, Any]], activations: ActivationSource | None) -> MemberSource:
        added = tuple(LoadedMember(id=f"trained_{Path(m['path']).name}", nominal_l0=m["nominal_l0"],
                                   format="sae_lens", path=m["path"], trained_here=True,
                                   training={key: value for key, value in m.items()
                                             if key not in ("path", "nominal_l0")})
                      for m in trained if activations is None or activations.trained_with(m))
        return replace(self, saes=self.saes + added) if added else self


def _members_from_trainers(raw: dict, where: str) -> tuple[LoadedMember, ...]:
    trainers = number_list(raw["trainers"], f"{where}.trainers")
    nominal = raw.get("nominal_l0", [None] * len(trainers))
    if not isinstance(nominal, list) or len(nominal) != len(trainers):
        raise SpecError(f"'{where}.nominal_l0' must list one L0 (or null) per trainer ({len(trainers)})")
    nominal = [None if l0 is None else float(number(l0, f"{where}.nominal_l0[{i}]")) for i, l0 in enumerate(nominal)]
    return tuple(LoadedMember(id=f"trainer_{i}", nominal_l0=l0, format=raw["source"], path=raw["path"].format(i=i),
                              repo_id=raw["repo_id"])
                 for i, l0 in zip(trainers, nominal))


def _members_from_grid(raw: dict, where: str) -> tuple[LoadedMember, ...]:
    """SAELens-format folders ``path`` at every (L0, seed) of the grid (``{l0}`` and ``{seed}`` in ``path``)."""
    l0s = number_list(raw["l0"], f"{where}.l0")
    seeds = number_list(raw["seeds"], f"{where}.seeds")
    if "{l0}" not in raw["path"] or ("{seed}" not in raw["path"] and len(seeds) > 1):
        raise SpecError(f"'{where}.path' must contain {{l0}} (and {{seed}} for several seeds), got {raw['path']!r}")
    return tuple(LoadedMember(id=f"l0-{l0:g}_seed-{seed}", nominal_l0=float(l0), format="sae_lens",
                              path=raw["path"].format(l0=l0, seed=seed), repo_id=raw["repo_id"], seed=seed)
                 for seed in seeds for l0 in l0s)


def _members_from_folders(raw: dict, where: str) -> tuple[LoadedMember, ...]:
    """SAELens-format folders of one repo listed L0 by L0 (``folders: [{l0: 16, path: runs/k16/final}, ...]``),
    for sweeps whose runs sit in folders no single template names (e.g. earlier and later stages of a study)."""
    folders = raw["folders"]
    if not isinstance(folders, list) or not folders:
        raise SpecError(f"'{where}.folders' must list each member as {{l0: L0, path: folder}}")
    members = []
    for index, entry in enumerate(folders):
        entry = check_keys(entry, {"l0", "path"}, f"{where}.folders[{index}]", required={"l0", "path"})
        nominal = float(number(entry["l0"], f"{where}.folders[{index}].l0"))
        if not isinstance(entry["path"], str) or not entry["path"]:
            raise SpecError(f"'{where}.folders[{index}].path' must be a folder in the repo, got {entry['path']!r}")
        members.append(LoadedMember(id=f"l0-{nominal:g}", nominal_l0=nominal, format="sae_lens", path=entry["path"],
                                    repo_id=raw["repo_id"]))
    if len({m.nominal_l0 for m in members}) < len(members) or len({m.path for m in members}) < len(members):
        raise SpecError(f"'{where}.folders' lists an L0 or a folder twice")
    return tuple(sorted(members, key=lambda m: m.nominal_l0))


@cache
def sae_lens_releases() -> dict[str, dict]:
    """sae-lens's ``pretrained_saes.yaml``, the metadata behind ``SAE.from_pretrained``, by release.

    Read from the installed package's file rather than through ``get_pretrained_saes_directory``:
    importing sae_lens costs ~5 s (torch, transformer-lens), and listing families must stay instant.
    """
    package_dir = importlib.util.find_spec("sae_lens").submodule_search_locations[0]
    with open(Path(package_dir) / "pretrained_saes.yaml") as handle:
        return yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def members_from_sae_lens_release(release: str, id_regex: str) -> tuple[LoadedMember, ...]:
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
        members.append(LoadedMember(id=entry["id"], nominal_l0=None if l0 is None else float(l0),
                              format="sae_lens_release", path=str(entry["path"]), repo_id=info["repo_id"],
                              release=release, converter=info.get("conversion_func")))
    if not members:
        raise SpecError(f"no id of sae-lens release '{release}' matches {id_regex!r}")
    return tuple(sorted(members, key=lambda m: (m.nominal_l0 is None, m.nominal_l0)))


_REGISTRY_KEYS = {"name", "description", "model", "hook", "layer", "d_in", "width", "architecture", "source"}
# the keys each kind of registry source needs beside those
_REGISTRY_SOURCE_KEYS = {"sae_lens_release": {"release", "id_regex"},
                         "dictionary_learning": {"repo_id", "path", "trainers"},
                         "sae_lens_grid": {"repo_id", "path", "l0", "seeds"},
                         "sae_lens_folders": {"repo_id", "folders"}}
# `activations`: a source as in a family file (a synthetic world), or overrides of the model profile's fields
# (l0eval/family/profiles.py); `verified` says whether every member folder was
# checked against the published repository (false: the layout is documented but not every folder was seen)
_REGISTRY_OPTIONAL = {"layer", "nominal_l0", "activations", "verified"}


def _family_from_registry_entry(raw: Any, where: str, device: str = "cpu",
                                overrides: dict[str, Any] | None = None) -> Family:
    source = raw.get("source") if isinstance(raw, dict) else None
    if source not in _REGISTRY_SOURCE_KEYS:
        raise SpecError(f"'{where}.source' must be one of {', '.join(_REGISTRY_SOURCE_KEYS)}, got {source!r}")
    keys = _REGISTRY_KEYS | _REGISTRY_SOURCE_KEYS[source]
    check_keys(raw, keys | _REGISTRY_OPTIONAL, where, required=keys - _REGISTRY_OPTIONAL)
    name = family_name(raw["name"], f"{where}.name")
    if source == "sae_lens_release":
        members = members_from_sae_lens_release(raw["release"], raw["id_regex"])
    elif source == "sae_lens_grid":
        members = _members_from_grid(raw, where)
    elif source == "sae_lens_folders":
        members = _members_from_folders(raw, where)
    else:
        members = _members_from_trainers(raw, where)
    layer = raw.get("layer")
    if not isinstance(raw.get("verified", True), bool):
        raise SpecError(f"'{where}.verified' must be true or false")
    saes = LoadedSAEs(members, d_in=number(raw["d_in"], f"{where}.d_in"), width=number(raw["width"], f"{where}.width"),
                      model=str(raw["model"]), hook=str(raw["hook"]), architecture=str(raw["architecture"]),
                      origin=source, layer=None if layer is None else number(layer, f"{where}.layer"),
                      verified=raw.get("verified", True))
    return loaded_family(name, str(raw["description"]), saes, _activations(raw, where, device, overrides or {}))


def _activations(raw: dict, where: str, device: str, overrides: dict[str, Any]) -> ActivationSource | None:
    """The entry's own activation source (one it names, e.g. a synthetic world), else its model's profile with
    the entry's `activations` then the command line's (`--activations`) as overrides."""
    from l0eval.family.profiles import model_profiles, profiled_activations
    from l0eval.family.sources import registered_sources

    entry = raw.get("activations", {})
    if not isinstance(entry, dict):
        raise SpecError(f"'{where}.activations' must be a mapping")
    profile = model_profiles().get(str(raw["model"]))
    if profile is None or set(entry) & set(registered_sources()):
        if overrides:
            raise SpecError(f"'{where}': --activations overrides a model profile (model_profiles.yaml), and model "
                            f"'{raw['model']}' has none here")
        return parse_activations(entry, SourceContext(HUB_REGISTRY.parent, str(raw["hook"]), str(raw["model"]),
                                                      f"{where}.activations"))
    return profiled_activations(profile, str(raw["hook"]), device, entry, overrides)


def parse_registry(raw: Any, path: Path) -> dict[str, Family]:
    """A hub registry file (``families: [...]``), checked as strictly as a user's family file."""
    try:
        entries = check_keys(raw, {"families"}, "", required={"families"})["families"]
        if not isinstance(entries, list):
            raise SpecError("'families' must be a list")
        families = {}
        for index, entry in enumerate(entries):
            family = _family_from_registry_entry(entry, f"families[{index}]")
            if family.name in families:
                raise SpecError(f"family '{family.name}' is listed twice")
            families[family.name] = family
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from exc
    return families


def loaded_family(name: str, description: str, saes: LoadedSAEs, activations: ActivationSource | None = None,
                  spec_path: str = "") -> Family:
    """A family of existing SAEs; judged by whatever its activations give (none without activations)."""
    if activations is None:
        judged = {"ground_truth": NO_GROUND_TRUTH}
    else:
        judged = {"ground_truth": activations.ground_truth(), "evaluation": activations.evaluation_settings(),
                  "selectors": activations.selector_settings(saes.declared_width())}
    return Family(name=name, description=description, kind="saes", members=saes, activations=activations,
                  spec_path=spec_path, **judged)


@cache
def hub_families() -> dict[str, Family]:
    """The registry shipped in ``l0eval/family/registry.yaml``, by name (activations as on the CPU)."""
    return parse_registry(read_yaml_file(HUB_REGISTRY), HUB_REGISTRY)


def hub_family(name: str, device: str = "cpu", overrides: dict[str, Any] | None = None) -> Family:
    """One registry family with its model profile's values for ``device`` and ``overrides`` (``--activations``)."""
    if device == "cpu" and not overrides:
        return hub_families()[name]
    entries = read_yaml_file(HUB_REGISTRY)["families"]
    index = next(i for i, entry in enumerate(entries) if entry.get("name") == name)
    return _family_from_registry_entry(entries[index], f"families[{index}]", device, overrides)


# ---------------------------------------------------------------------------------------------
# User-defined SAE families (kind: saes)

_MEMBER_KEYS = {"id", "path", "repo_id", "release", "format", "nominal_l0", "cfg_overrides", "seed"}


def _parse_member(raw: Any, index: int, base: Path) -> LoadedMember:
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
        nominal = float(number(nominal, f"{where}.nominal_l0"))
    overrides = member.get("cfg_overrides", {})
    if not isinstance(overrides, dict):
        raise SpecError(f"'{where}.cfg_overrides' must be a mapping")
    if release is not None:  # `path` is the SAE's id in the release: where it lives comes from sae-lens
        return _release_member(str(release), path, str(member.get("id", path)), nominal, overrides, where)
    return LoadedMember(id=str(member.get("id", Path(path).name)), nominal_l0=nominal, format=fmt, path=path,
                        repo_id=repo_id, release=release, cfg_overrides=overrides,
                        seed=number(member.get("seed", 0), f"{where}.seed"))


def _release_member(release: str, sae_id: str, member_id: str, nominal: float | None, overrides: dict,
                    where: str) -> LoadedMember:
    """A member given as ``release:`` + ``path: <SAE id>``, located through sae-lens's release metadata."""
    info = sae_lens_releases().get(release)
    if info is None:
        raise SpecError(f"'{where}.release': sae-lens has no release '{release}'")
    entry = next((e for e in info["saes"] if e["id"] == sae_id), None)
    if entry is None:
        raise SpecError(f"'{where}.path': release '{release}' has no SAE id '{sae_id}'")
    l0 = nominal if nominal is not None else entry.get("l0")
    return LoadedMember(id=member_id, nominal_l0=None if l0 is None else float(l0), format="sae_lens_release",
                  path=str(entry["path"]), repo_id=info["repo_id"], release=release,
                  converter=info.get("conversion_func"), cfg_overrides=overrides)


def parse_sae_family(raw: Any, source_path: Path) -> Family:
    """A user family (``kind: saes``): members in local folders, hub repos or SAELens releases."""
    top = check_keys(raw, {"name", "kind", "description", "model", "hook", "d_in", "width", "architecture",
                            "members", "activations", "build"}, "", required={"name", "kind", "d_in", "members"})
    if not isinstance(top["members"], list):
        raise SpecError("'members' must be a list (it may be empty when `l0eval train` fills the family)")
    members = tuple(_parse_member(m, i, source_path.parent) for i, m in enumerate(top["members"]))
    if len({m.id for m in members}) != len(members):
        raise SpecError("member ids must be unique (set 'id' where folder names repeat)")
    model, hook = str(top.get("model", "")), str(top.get("hook", ""))
    activations = parse_activations(top.get("activations", {}), SourceContext(source_path.parent, hook, model))
    saes = LoadedSAEs(members, d_in=number(top["d_in"], "d_in"),
                      width=number(top.get("width", 0), "width"), model=model, hook=hook,
                      architecture=str(top.get("architecture", "")), build=str(top.get("build", "")))
    return loaded_family(family_name(top["name"]), str(top.get("description", "")), saes, activations,
                         str(source_path))
