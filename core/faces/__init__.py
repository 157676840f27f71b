"""Face detection (MTCNN), alignment (5-point similarity transform) and facial regions."""

from .align import ARCFACE_TEMPLATE_112, align_face, estimate_similarity, template_for_size
from .detect import FaceDetector, choose_face

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "FaceDetector",
    "align_face",
    "choose_face",
    "estimate_similarity",
    "template_for_size",
]
