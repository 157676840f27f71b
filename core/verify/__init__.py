"""Verification: similarity, decision threshold, C-Score confidence and calibration files."""

from .calibration import Calibration, build_calibration, default_calibration_path, load_calibration
from .confidence import CScore, fit_cscore
from .similarity import cosine_distance, cosine_similarity
from .threshold import best_threshold, cv_threshold

__all__ = [
    "CScore",
    "Calibration",
    "best_threshold",
    "build_calibration",
    "cosine_distance",
    "cosine_similarity",
    "cv_threshold",
    "default_calibration_path",
    "fit_cscore",
    "load_calibration",
]
