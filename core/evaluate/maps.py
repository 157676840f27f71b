"""A dataset-level sanity check of explanation maps: the mean map value of genuine pairs
against impostor pairs, method by method.

A signed similarity map (positive = the region makes the faces similar) should, on
average, be more positive for pairs of the same person than for pairs of different people.
A method whose maps fail this check on a labelled set says little about similarity.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data import LabelledPair, resolve
from ..errors import XFVError
from ..types import AlignedFace, FacePair

if TYPE_CHECKING:
    from ..runner import Runner

log = logging.getLogger(__name__)


@dataclass
class MapMeans:
    """Per method: the mean map value (both faces' maps averaged) of each scored pair."""

    genuine: dict[str, list[float]] = field(default_factory=dict)
    impostor: dict[str, list[float]] = field(default_factory=dict)
    failed: list[tuple[LabelledPair, str]] = field(default_factory=list)

    def summary(self) -> list[dict[str, Any]]:
        rows = []
        for m in self.genuine.keys() | self.impostor.keys():
            g, i = np.asarray(self.genuine.get(m, [])), np.asarray(self.impostor.get(m, []))
            rows.append({
                "method": m, "genuine_mean": float(g.mean()) if g.size else float("nan"),
                "impostor_mean": float(i.mean()) if i.size else float("nan"), "n_genuine": int(g.size), "n_impostor": int(i.size),
                "separated": bool(g.size and i.size and g.mean() > i.mean()),
            })  # fmt: skip
        return sorted(rows, key=lambda r: r["method"])


def pick_pairs(pairs: Sequence[LabelledPair], per_label: int | None) -> list[LabelledPair]:
    """The first ``per_label`` genuine and the first ``per_label`` impostor pairs (all if None)."""
    if per_label is None:
        return list(pairs)
    gen = [p for p in pairs if p.same][:per_label]
    imp = [p for p in pairs if not p.same][:per_label]
    return gen + imp


def map_means(runner: Runner, pairs: Sequence[LabelledPair], images: str | Path | None, csv_path: str | Path, methods: Sequence[str],
              progress: bool = True, **knobs: Any) -> MapMeans:  # fmt: skip
    """Run ``methods`` on every pair (each image detected and aligned once) and collect the
    mean of each method's maps, split by label."""
    from tqdm import tqdm

    faces: dict[str, AlignedFace | str] = {}
    out = MapMeans()
    for p in tqdm(pairs, desc="pairs", unit="pair", disable=not progress):
        for f in (p.file_x, p.file_y):
            if f not in faces:
                try:
                    faces[f] = runner.prepare(resolve(images, f, csv_path), f)
                except XFVError as e:
                    faces[f] = str(e)
        a, b = faces[p.file_x], faces[p.file_y]
        if isinstance(a, str) or isinstance(b, str):
            out.failed.append((p, a if isinstance(a, str) else str(b)))
            continue
        res = runner.explain(FacePair(a, b), methods=methods, **knobs)
        bucket = out.genuine if p.same else out.impostor
        for exp in res.explanations:
            if not exp.ok:
                log.warning("%s failed on %s / %s: %s", exp.method, p.file_x, p.file_y, exp.error)
                continue
            bucket.setdefault(exp.method, []).append(float(np.mean([m.mean() for m in exp.maps])))
    return out
