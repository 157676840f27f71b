"""Face detection with MTCNN (Zhang et al., "Joint Face Detection and Alignment using
Multitask Cascaded Convolutional Networks", 2016), from facenet-pytorch, whose weights
ship inside its wheel. Returns boxes, confidences and 5 landmarks per face; when several
faces are present the largest confident one is chosen and the result says so.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..device import resolve_device
from ..errors import InvalidParameterError, ModelUnavailableError, NoFaceError
from ..types import DetectedFace, Detection

if TYPE_CHECKING:
    from facenet_pytorch import MTCNN

log = logging.getLogger(__name__)


def choose_face(faces: list[DetectedFace], min_confidence: float) -> DetectedFace | None:
    """The largest face whose confidence is at least ``min_confidence``, else ``None``."""
    confident = [f for f in faces if f.score >= min_confidence]
    if not confident:
        return None
    return max(confident, key=lambda f: (f.area, f.score))


#: The shortest image side that can hold a face, in pixels: MTCNN's default smallest face
#: (``min_face_size``). A face must fit in the image, and below about 20 px a face no
#: longer carries its identity (thumbnails of obama.jpg against obama2.jpg with SFace:
#: similarity 0.29 at a 20 px thumbnail, 0.41 at 24 px, both under the 0.48 threshold;
#: 0.57 at 32 px), so a smaller image is refused rather than upscaled (at most 8x, then).
MIN_IMAGE_SIDE = 20
#: Most pixels of the image given to MTCNN (its cost and memory grow with them).
MAX_DETECT_PIXELS = 1024 * 1024


class FaceDetector:
    """MTCNN loaded lazily, once. ``detect`` returns every face; ``detect_one`` picks one.

    ``min_face_size`` is MTCNN's smallest face in pixels. Images smaller than
    ``upscale_below`` pixels on their short side are upscaled before detection, which finds
    faces in thumbnails MTCNN would otherwise miss; images larger than ``max_side`` on their
    long side are downscaled for detection only (MTCNN's cost grows with the pixel count;
    alignment still samples the full-resolution image). Coordinates are scaled back. The
    image MTCNN sees never exceeds ``max_side`` on its long side nor ``max_pixels`` in all,
    whatever the input's shape; an image under ``min_side`` pixels on its short side, or
    so thin that fitting it leaves its short side under ``min_face_size``, raises
    ``NoFaceError`` (it cannot hold a face) before any work.
    """

    def __init__(
        self,
        device: str | torch.device | None = "auto",
        min_confidence: float = 0.9,
        min_face_size: int = 20,
        upscale_below: int = 160,
        max_side: int = 1024,
        max_pixels: int = MAX_DETECT_PIXELS,
        min_side: int = MIN_IMAGE_SIDE,
    ) -> None:
        self.device = resolve_device(device)
        self.min_confidence = float(min_confidence)
        self.min_face_size = int(min_face_size)
        self.upscale_below = int(upscale_below)
        self.max_side = int(max_side)
        self.max_pixels = int(max_pixels)
        self.min_side = int(min_side)
        self._mtcnn: MTCNN | None = None
        self._lock = threading.Lock()

    @property
    def mtcnn(self) -> MTCNN:
        with self._lock:
            if self._mtcnn is None:
                try:
                    from facenet_pytorch import MTCNN
                except ImportError as e:
                    raise ModelUnavailableError(
                        "face detection needs facenet-pytorch (its wheel carries the MTCNN weights): pip install facenet-pytorch==2.5.3"
                    ) from e
                self._mtcnn = MTCNN(keep_all=True, min_face_size=self.min_face_size, device=self.device)
                self._mtcnn.eval()
                log.info("MTCNN loaded on %s", self.device)
            return self._mtcnn

    def scale_for(self, height: int, width: int, name: str = "the image") -> float:
        """The factor an image of ``height x width`` is resized by before MTCNN: its short
        side up to ``upscale_below``, capped so the result fits ``max_side`` and
        ``max_pixels``; ``NoFaceError`` if the image is too small or too thin for a face."""
        short, long = min(height, width), max(height, width)
        if short < self.min_side:
            raise NoFaceError(
                f"{name} is {width}x{height} pixels, too small to hold a face (its short side must be at least {self.min_side} px); "
                "use a larger photo in which the face is at least about 32 pixels wide"
            )
        k = self.upscale_below / short if short < self.upscale_below else 1.0
        k = min(k, self.max_side / long, (self.max_pixels / (height * width)) ** 0.5)
        if short * k < self.min_face_size:
            raise NoFaceError(
                f"{name} is {width}x{height} pixels, too elongated to hold a face: fitted into {self.max_side} px for detection, "
                f"its short side would be {short * k:.0f} px, under the smallest face MTCNN finds ({self.min_face_size} px); crop it around the face"
            )
        return k

    def detect(self, image: np.ndarray, name: str = "the image") -> list[DetectedFace]:
        """Every face MTCNN finds in an RGB ``uint8`` image, largest first."""
        h, w = image.shape[:2]
        k = self.scale_for(h, w, name)
        if k != 1.0:
            import cv2

            interp = cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA
            image = cv2.resize(image, (max(1, round(w * k)), max(1, round(h * k))), interpolation=interp)
        with torch.no_grad():
            boxes, probs, points = self.mtcnn.detect(image, landmarks=True)
        if boxes is None:
            return []
        faces = [
            DetectedFace(box=np.asarray(b, np.float32) / k, landmarks=np.asarray(p, np.float32) / k, score=float(s))
            for b, s, p in zip(boxes, probs, points, strict=False)
        ]
        return sorted(faces, key=lambda f: f.area, reverse=True)

    def detect_one(self, image: np.ndarray, name: str = "the image", face: int | None = None) -> Detection:
        """The largest confident face (or the ``face``-th confident one, 0 = the largest),
        with every confident face found; ``NoFaceError`` if none, ``InvalidParameterError``
        when ``face`` is not one of them."""
        faces = self.detect(image, name)
        chosen = choose_face(faces, self.min_confidence)
        if chosen is None:
            best = max((f.score for f in faces), default=None)
            extra = "" if best is None else f" (the best candidate had confidence {best:.2f} < {self.min_confidence:.2f})"
            raise NoFaceError(f"no face found in {name}{extra}; use a photo where the face is visible, frontal-ish and at least about 20 pixels wide")
        confident = tuple(f for f in faces if f.score >= self.min_confidence)
        if face is not None:
            if not 0 <= int(face) < len(confident):
                raise InvalidParameterError(
                    f"face {int(face) + 1} of {name} was asked for, but {name} has {len(confident)} face{'s' * (len(confident) != 1)}: "
                    f"choose 1 to {len(confident)} (1 is the largest)"
                )
            return Detection(face=confident[int(face)], faces=confident, image_size=(image.shape[1], image.shape[0]), chosen=int(face))
        return Detection(face=chosen, faces=confident, image_size=(image.shape[1], image.shape[0]))
