"""Characteristic descriptor sets: the textual concepts of the concept bottleneck
(Yalavarthi and Ratha), grouped so that the alternatives of a group exclude each other.

A set is a JSON file (``assets/descriptors/*.json``)::

    {"name": "...", "template": "a close-up photo of a face with {}.",
     "components": [{"component": "eyes",
                     "groups": [{"group": "eye spacing", "alternatives": ["close-set eyes", ...]}]}]}

Loading refuses, with the place of the problem, an empty descriptor, a duplicate one
(compared without case and surrounding spaces), a group with fewer than two alternatives
(a softmax over one concept is always 1) and a template without ``{}``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "descriptors"
FACES = ASSETS / "fiswg_faces.json"


@dataclass(frozen=True)
class DescriptorGroup:
    component: str
    name: str
    alternatives: tuple[str, ...]


@dataclass(frozen=True)
class DescriptorSet:
    """Descriptors in order, with the group of each (``group_ids[i]`` indexes ``groups``)."""

    name: str
    template: str
    groups: tuple[DescriptorGroup, ...]

    @property
    def descriptors(self) -> list[str]:
        return [d for g in self.groups for d in g.alternatives]

    @property
    def group_ids(self) -> list[int]:
        return [i for i, g in enumerate(self.groups) for _ in g.alternatives]

    @property
    def prompts(self) -> list[str]:
        """The texts the CLIP text encoder sees, one per descriptor."""
        return [self.template.format(d) for d in self.descriptors]

    def __len__(self) -> int:
        return sum(len(g.alternatives) for g in self.groups)

    def digest(self) -> str:
        """SHA-256 of the prompts and their grouping (cache keys, saved heads)."""
        h = hashlib.sha256()
        for g in self.groups:
            h.update("\x1f".join([g.component, g.name, "\x1e".join(g.alternatives)]).encode() + b"\x1d")
        h.update(self.template.encode())
        return h.hexdigest()

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "descriptor set") -> DescriptorSet:
        template = data.get("template", "{}")
        if not isinstance(template, str) or "{}" not in template:
            raise DataError(f"{source}: the template must contain '{{}}' where the descriptor goes, got {template!r}")
        comps = data.get("components")
        if not isinstance(comps, list) or not comps:
            raise DataError(f"{source}: 'components' must be a non-empty list")
        seen: dict[str, str] = {}
        groups: list[DescriptorGroup] = []
        for ci, comp in enumerate(comps):
            cname = str(comp.get("component", "")).strip()
            if not cname:
                raise DataError(f"{source}: component {ci + 1} has no name")
            for gi, grp in enumerate(comp.get("groups") or []):
                gname = str(grp.get("group", "")).strip() or f"{cname} {gi + 1}"
                where = f"{source}: {cname} / {gname}"
                alts = grp.get("alternatives")
                if not isinstance(alts, list) or len(alts) < 2:
                    raise DataError(f"{where}: a group needs at least two alternatives that exclude each other")
                clean = []
                for ai, a in enumerate(alts):
                    text = a.strip() if isinstance(a, str) else ""
                    if not text:
                        raise DataError(f"{where}: descriptor {ai + 1} is empty")
                    key = " ".join(text.lower().split())
                    if key in seen:
                        raise DataError(f"{where}: duplicate descriptor {text!r} (also in {seen[key]})")
                    seen[key] = f"{cname} / {gname}"
                    clean.append(text)
                groups.append(DescriptorGroup(cname, gname, tuple(clean)))
        if not groups:
            raise DataError(f"{source}: no descriptor groups")
        return cls(str(data.get("name", source)), template, tuple(groups))


def load_descriptors(path: str | Path = FACES) -> DescriptorSet:
    """A descriptor set from its JSON file (default: the FISWG face descriptors)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"descriptor set not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    return DescriptorSet.from_dict(data, source=path.name)
