"""Where an SAE of a family sits in sae-lens's ``pretrained_saes.yaml``: its release, its SAELens id and,
when the registry lists one, its Neuronpedia id. SAEBench and Neuronpedia key results by these ids.

Matched by (hub repo, folder): a registry family's member and a sae-lens release entry name the same
files even when l0eval loads them with another converter (SAEBench's dictionary_learning folders).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from l0eval.family.registry import sae_lens_releases

NEURONPEDIA_URL = "https://www.neuronpedia.org/"


@dataclass(frozen=True)
class SaeLensIdentity:
    release: str
    sae_id: str
    neuronpedia: str | None  # e.g. "gemma-2-2b/12-gemmascope-res-16k"; None where the registry has none

    @property
    def neuronpedia_url(self) -> str | None:
        return NEURONPEDIA_URL + self.neuronpedia if self.neuronpedia else None


@cache
def _by_location() -> dict[tuple[str, str], SaeLensIdentity]:
    """(repo_id, path) -> identity; where several releases list the same files, the first release by name."""
    index: dict[tuple[str, str], SaeLensIdentity] = {}
    for release, info in sorted(sae_lens_releases().items()):
        for entry in info.get("saes", []):
            key = (info.get("repo_id"), str(entry.get("path")))
            index.setdefault(key, SaeLensIdentity(release, str(entry["id"]), entry.get("neuronpedia")))
    return index


def member_identity(repo_id: str | None, path: str | None) -> SaeLensIdentity | None:
    """The sae-lens identity of the SAE stored at ``path`` in hub repo ``repo_id``; None for local or trained
    SAEs and hub SAEs that sae-lens does not list."""
    if not repo_id or path is None:
        return None
    return _by_location().get((repo_id, str(path).strip("/")))
