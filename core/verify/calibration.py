"""Calibration files: a model's decision threshold and C-Score curve, with the data they
came from, saved as small JSON under ``assets/calibration/<model>.json``."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CalibrationError
from .confidence import CScore, fit_cscore
from .threshold import cv_threshold

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "calibration"


def default_calibration_path(model: str) -> Path:
    return ASSETS / f"{model}.json"


@dataclass(frozen=True)
class Calibration:
    model: str
    weights_sha256: str
    threshold_distance: float  # genuine when cosine distance <= this
    cv_accuracy: float
    cv_accuracy_std: float
    cscore: CScore
    n_genuine: int
    n_impostor: int
    source: dict[str, Any] = field(default_factory=dict)  # what data, how many pairs, when

    @property
    def threshold_similarity(self) -> float:
        """The same threshold on cosine similarity: same person when sim >= this."""
        return 1.0 - self.threshold_distance

    def decide(self, similarity: float) -> tuple[bool, float]:
        """(same person?, C-Score) for a cosine similarity."""
        d = 1.0 - float(similarity)
        return bool(d <= self.threshold_distance), float(self.cscore(d))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cscore"] = self.cscore.to_dict()
        out["threshold_similarity"] = self.threshold_similarity
        return out

    def save(self, path: str | Path | None = None) -> Path:
        path = Path(path) if path is not None else default_calibration_path(self.model)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


def build_calibration(
    distances: np.ndarray,
    same: np.ndarray,
    model: str,
    weights_sha256: str,
    source: dict[str, Any] | None = None,
    folds: int = 10,
    seed: int = 0,
) -> Calibration:
    """Threshold by ``folds``-fold cross-validation, then the C-Score fitted on all pairs."""
    d = np.asarray(distances, dtype=np.float64)
    y = np.asarray(same, dtype=bool)
    cv = cv_threshold(d, y, folds=folds, seed=seed)
    cs = fit_cscore(d, y, cv.threshold)
    src = dict(source or {})
    src.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    src["folds"] = folds
    src["fold_thresholds"] = [round(t, 6) for t in cv.fold_thresholds]
    return Calibration(
        model=model,
        weights_sha256=weights_sha256,
        threshold_distance=cv.threshold,
        cv_accuracy=cv.accuracy,
        cv_accuracy_std=cv.accuracy_std,
        cscore=cs,
        n_genuine=int(y.sum()),
        n_impostor=int((~y).sum()),
        source=src,
    )


def load_calibration(model: str, path: str | Path | None = None) -> Calibration:
    path = Path(path) if path is not None else default_calibration_path(model)
    if not path.is_file():
        raise CalibrationError(
            f"no calibration for model '{model}' at {path}; build one with "
            f"`python -m core calibrate PAIRS_OR_IDENTITIES.csv --images DIR --model {model}` "
            "or pass a threshold explicitly"
        )
    try:
        raw = json.loads(path.read_text())
        cs = CScore(**raw["cscore"])
        return Calibration(
            model=raw["model"],
            weights_sha256=raw["weights_sha256"],
            threshold_distance=float(raw["threshold_distance"]),
            cv_accuracy=float(raw["cv_accuracy"]),
            cv_accuracy_std=float(raw["cv_accuracy_std"]),
            cscore=cs,
            n_genuine=int(raw["n_genuine"]),
            n_impostor=int(raw["n_impostor"]),
            source=dict(raw.get("source", {})),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CalibrationError(f"{path} is not a valid calibration file ({type(e).__name__}: {e})") from e
