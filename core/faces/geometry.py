"""Measured facial geometry, in the FISWG words of the descriptor set: ratios of landmark
distances on the aligned crop, placed within a reference population of faces measured the
same way.

With dlib's 68 landmarks (``faces.regions.landmarks68``; 36-41 the subject's right eye,
42-47 the left, 31-35 the nostrils, 48-54 the mouth corners, 0-16 the jaw, 27 the nasion,
8 the menton):

================  ======================================  ===========================================
measure           ratio                                   words (low / middle / high)
================  ======================================  ===========================================
eye spacing       inner eye corners / eye width           close-set / evenly spaced / wide-set eyes
eye size          eye width / jaw width at 1-15           small / (none) / large eyes
nose width        nostril width (31-35) / inner corners   narrow / (none) / wide nose
mouth width       mouth corners / nostril width           narrow / (none) / wide mouth
face proportions  nasion-menton / jaw width at 1-15, %    short wide / average / long narrow face
================  ======================================  ===========================================

With the five MTCNN points only: mouth width / distance of the eye centres.

Why a population and not the classical canons (intercanthal width = eye width, nose width
= intercanthal width, mouth = 1.5 noses): dlib's points are not the anthropometric ones (its
eye corners sit inside the canthi, 31 and 35 are the nostrils, not the alae), so on real
photos the canon ratios come out at about 1.5, 0.7 and 2.2 for almost everyone (measured on
the deepface photos) and every face would be "wide-set eyes, narrow nose, wide mouth". A
value below the reference's 25th percentile is "low", above its 75th "high". The shipped
reference (``assets/geometry/reference.json``) is the 61 photos of 13 people of
``../shared/data/faces/deepface/identities.csv``, built with
``python -m core geometry-reference ../shared/data/faces/deepface/identities.csv``: a small
population; build one for the population your cases come from. Widths shrink when the head
is turned: the measures describe the photos, and are independent of any model's decision.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

REFERENCE = Path(__file__).resolve().parents[2] / "assets" / "geometry" / "reference.json"

#: key -> (label, words for low / middle / high)
MEASURES_68: dict[str, tuple[str, tuple[str | None, str | None, str | None]]] = {
    "eye_spacing": ("eye spacing (inner eye corners / eye width)", ("close-set eyes", "evenly spaced eyes", "wide-set eyes")),
    "eye_size": ("eye size (eye width / face width)", ("small eyes", None, "large eyes")),
    "nose_width": ("nose width (nostrils / inner eye corners)", ("narrow nose", None, "wide nose")),
    "mouth_width": ("mouth width (mouth / nostrils)", ("narrow mouth", None, "wide mouth")),
    "face_proportions": ("facial index (nasion-menton / face width, %)", ("short wide face", "face of average length and width", "long narrow face")),
}
MEASURES_5: dict[str, tuple[str, tuple[str | None, str | None, str | None]]] = {
    "mouth_to_eyes": ("mouth width / distance of the eye centres", ("narrow mouth", None, "wide mouth")),
}


@dataclass(frozen=True)
class Measure:
    key: str
    label: str
    value: float
    low: float  # the reference population's 25th percentile
    high: float  # its 75th
    band: str  # "low", "middle" or "high"
    word: str | None  # the FISWG descriptor it falls under (None: nothing to say)


def _d(p: np.ndarray, i: int, j: int) -> float:
    return float(np.linalg.norm(p[i] - p[j]))


def ratios_68(p: np.ndarray) -> dict[str, float]:
    """The five ratios from dlib's 68 landmarks (crop coordinates)."""
    p = np.asarray(p, dtype=np.float64)
    eye_w = (_d(p, 36, 39) + _d(p, 42, 45)) / 2
    inner, nose, mouth, jaw = _d(p, 39, 42), _d(p, 31, 35), _d(p, 48, 54), _d(p, 1, 15)
    return {"eye_spacing": inner / eye_w, "eye_size": eye_w / jaw, "nose_width": nose / inner, "mouth_width": mouth / nose,
            "face_proportions": 100 * _d(p, 27, 8) / jaw}  # fmt: skip


def ratios_5(lm: np.ndarray) -> dict[str, float]:
    """The one ratio the five MTCNN points allow."""
    lm = np.asarray(lm, dtype=np.float64)
    return {"mouth_to_eyes": _d(lm, 3, 4) / _d(lm, 0, 1)}


def load_reference(path: str | Path = REFERENCE) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no geometry reference at {path}; build one with `python -m core geometry-reference IDENTITIES.csv`")
    return json.loads(path.read_text())


def describe(ratios: dict[str, float], landmarks: str, reference: dict[str, Any] | None = None) -> list[Measure]:
    """Each ratio placed in the reference population's quartiles, with its word."""
    ref = (reference or load_reference())["landmarks"][landmarks]
    table = MEASURES_68 if landmarks == "68" else MEASURES_5
    out = []
    for key, value in ratios.items():
        label, words = table[key]
        lo, hi = float(ref[key]["p25"]), float(ref[key]["p75"])
        band = "low" if value < lo else ("high" if value > hi else "middle")
        out.append(Measure(key, label, float(value), lo, hi, band, dict(zip(("low", "middle", "high"), words, strict=True))[band]))
    return out


def build_reference(ratios: Sequence[tuple[dict[str, float], str]], source: str) -> dict[str, Any]:
    """Percentiles (10, 25, 50, 75, 90) of every ratio over a population of faces."""
    out: dict[str, Any] = {"source": source, "landmarks": {}}
    for lms in ("68", "5"):
        rows = [r for r, kind in ratios if kind == lms]
        if not rows:
            continue
        out["landmarks"][lms] = {"n_faces": len(rows)} | {
            k: {f"p{q}": float(np.percentile([r[k] for r in rows], q)) for q in (10, 25, 50, 75, 90)} for k in rows[0]
        }
    return out
