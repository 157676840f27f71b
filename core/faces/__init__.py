"""Face detection (MTCNN), alignment (5-point similarity transform) and facial regions."""

from .align import ARCFACE_TEMPLATE_112, align_face, estimate_similarity, template_for_size
from .detect import FaceDetector, choose_face
from .regions import REGION_LABELS, REGIONS, RegionMasks, landmarks68, region_masks

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "REGIONS",
    "REGION_LABELS",
    "FaceDetector",
    "RegionMasks",
    "align_face",
    "choose_face",
    "estimate_similarity",
    "landmarks68",
    "region_masks",
    "template_for_size",
]
