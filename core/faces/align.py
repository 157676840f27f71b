"""Alignment of a detected face onto the standard 5-point template by a similarity
transform (rotation, uniform scale, translation), estimated in the least-squares sense
(Umeyama, "Least-squares estimation of transformation parameters between two point
patterns", 1991) and applied with ``cv2.warpAffine``.

Templates (``TEMPLATES``): the ArcFace/InsightFace 112x112 one used by SFace, ArcFace and
AdaFace, and ``dlib``: where the five MTCNN points fall on dlib's own 150 x 150 face chips
(``dlib.get_face_chip``, padding 0.25), for dlib's ResNet descriptor. Other output sizes
scale a template uniformly.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..types import AlignedFace, Detection

#: The standard 5-point template for a 112x112 crop: eye on the image's left, eye on the
#: image's right, nose tip, mouth corner on the left, mouth corner on the right.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


#: The five MTCNN points on dlib's 150 px face chips: their mean over the 69 faces of
#: ``../shared/data/faces`` that dlib's HOG detector and MTCNN both find once, each mapped
#: into the chip dlib's 5-point shape predictor gives (``python benchmarks/dlib_alignment.py``
#: measures it again, and the verification of both alignments).
DLIB_TEMPLATE_150 = np.array(
    [
        [46.082, 45.066],
        [101.026, 44.773],
        [73.161, 77.269],
        [48.322, 100.873],
        [99.979, 100.396],
    ],
    dtype=np.float64,
)

#: name -> (the template, the crop size it is given for)
TEMPLATES: dict[str, tuple[np.ndarray, int]] = {"arcface": (ARCFACE_TEMPLATE_112, 112), "dlib": (DLIB_TEMPLATE_150, 150)}


def template_for_size(size: int, template: str = "arcface") -> np.ndarray:
    """The 5-point ``template`` (a name of ``TEMPLATES``) scaled to a ``size`` x ``size`` crop."""
    if size < 8:
        raise ValueError(f"an aligned crop must be at least 8 pixels wide, got {size}")
    if template not in TEMPLATES:
        raise ValueError(f"unknown alignment template {template!r}; choose from {', '.join(TEMPLATES)}")
    points, base = TEMPLATES[template]
    return points * (size / base)


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The (2, 3) similarity transform that maps ``src`` points onto ``dst`` (Umeyama)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need matching (N, 2) point sets with N >= 2, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    e = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        e[1, 1] = -1.0
    r = u @ e @ vt
    var_s = (s0**2).sum() / len(src)
    if var_s <= 0:
        raise ValueError("the source points coincide; cannot estimate a transform")
    scale = float((sig * np.diag(e)).sum() / var_s)
    t = mu_d - scale * r @ mu_s
    return np.hstack([scale * r, t[:, None]])


def align_face(image: np.ndarray, detection: Detection, size: int = 112, keep_source: bool = True, template: str = "arcface") -> AlignedFace:
    """Warp the chosen face of ``detection`` onto the ``template`` at ``size`` x ``size``."""
    face = detection.face
    m = estimate_similarity(face.landmarks, template_for_size(size, template))
    crop = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    pts = np.hstack([face.landmarks, np.ones((5, 1))]) @ m.T
    return AlignedFace(
        image=np.ascontiguousarray(crop),
        landmarks=pts.astype(np.float32),
        box=np.asarray(face.box, dtype=np.float32),
        transform=m.astype(np.float64),
        detection=detection,
        source=image if keep_source else None,
        template=template,
    )


def realign(face: AlignedFace, size: int, template: str | None = None) -> AlignedFace:
    """The same face at another crop size (or on another ``template``; default: its own),
    warped again from its source image."""
    template = template or face.template
    if face.size == size and face.template == template:
        return face
    if face.source is None or face.detection is None:
        crop = cv2.resize(face.image, (size, size), interpolation=cv2.INTER_AREA if face.size > size else cv2.INTER_LINEAR)
        k = size / face.size
        scale = np.diag([k, k, 1.0])
        m = (scale @ np.vstack([face.transform, [0, 0, 1]]))[:2]
        return AlignedFace(crop, face.landmarks * k, face.box, m, face.detection, face.source, face.template)
    return align_face(face.source, face.detection, size, template=template)
