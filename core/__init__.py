"""Explainable face verification: the public API.

>>> from core import Runner
>>> res = Runner().verify("a.jpg", "b.jpg")       # doctest: +SKIP
>>> res.same, res.similarity, res.c_score          # doctest: +SKIP
"""

from .cancel import Cancelled, CancelToken
from .errors import (
    CalibrationError,
    DataError,
    InvalidImageError,
    MethodRequirementError,
    ModelUnavailableError,
    NoFaceError,
    UnknownNameError,
    XFVError,
)
from .io import load_image
from .registry import (
    DEFAULT_MODEL,
    ExplainerSpec,
    ModelSpec,
    describe_models,
    explainer_names,
    get_embedder,
    model_names,
    register_explainer,
    register_model,
)
from .runner import Runner
from .text import confidence_words, verdict_sentence
from .types import AlignedFace, DetectedFace, Detection, Explainer, Explanation, FaceEmbedder, FacePair, PairResult
from .verify import Calibration, CScore, load_calibration

__all__ = [
    "DEFAULT_MODEL",
    "AlignedFace",
    "CScore",
    "Calibration",
    "CalibrationError",
    "CancelToken",
    "Cancelled",
    "DataError",
    "DetectedFace",
    "Detection",
    "Explainer",
    "ExplainerSpec",
    "Explanation",
    "FaceEmbedder",
    "FacePair",
    "InvalidImageError",
    "MethodRequirementError",
    "ModelSpec",
    "ModelUnavailableError",
    "NoFaceError",
    "PairResult",
    "Runner",
    "UnknownNameError",
    "XFVError",
    "confidence_words",
    "describe_models",
    "explainer_names",
    "get_embedder",
    "load_calibration",
    "load_image",
    "model_names",
    "register_explainer",
    "register_model",
    "verdict_sentence",
]
