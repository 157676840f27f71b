"""Face detection with MTCNN (Zhang et al., "Joint Face Detection and Alignment using
Multitask Cascaded Convolutional Networks", 2016), from facenet-pytorch, whose weights
ship inside its wheel. Returns boxes, confidences and 5 landmarks per face; when several
faces are present the largest confident one is chosen and the result says so.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import torch

from ..device import resolve_device
from ..errors import ModelUnavailableError, NoFaceError
from ..types import DetectedFace, Detection

log = logging.getLogger(__name__)


def choose_face(faces: list[DetectedFace], min_confidence: float) -> DetectedFace | None:
    """The largest face whose confidence is at least ``min_confidence``, else ``None``."""
    confident = [f for f in faces if f.score >= min_confidence]
    if not confident:
        return None
    return max(confident, key=lambda f: (f.area, f.score))


class FaceDetector:
    """MTCNN loaded lazily, once. ``detect`` returns every face; ``detect_one`` picks one.

    ``min_face_size`` is MTCNN's smallest face in pixels. Images smaller than
    ``upscale_below`` pixels on their short side are upscaled before detection, which finds
    faces in thumbnails MTCNN would otherwise miss; images larger than ``max_side`` on their
    long side are downscaled for detection only (MTCNN's cost grows with the pixel count;
    alignment still samples the full-resolution image). Coordinates are scaled back.
    """

    def __init__(
        self,
        device: str | torch.device | None = "auto",
        min_confidence: float = 0.9,
        min_face_size: int = 20,
        upscale_below: int = 160,
        max_side: int = 1024,
    ) -> None:
        self.device = resolve_device(device)
        self.min_confidence = float(min_confidence)
        self.min_face_size = int(min_face_size)
        self.upscale_below = int(upscale_below)
        self.max_side = int(max_side)
        self._mtcnn = None
        self._lock = threading.Lock()

    @property
    def mtcnn(self):
        with self._lock:
            if self._mtcnn is None:
                try:
                    from facenet_pytorch import MTCNN
                except ImportError as e:
                    raise ModelUnavailableError(
                        "face detection needs facenet-pytorch (its wheel carries the MTCNN weights): pip install --no-deps facenet-pytorch==2.6.0"
                    ) from e
                self._mtcnn = MTCNN(keep_all=True, min_face_size=self.min_face_size, device=self.device)
                self._mtcnn.eval()
                log.info("MTCNN loaded on %s", self.device)
            return self._mtcnn

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Every face MTCNN finds in an RGB ``uint8`` image, largest first."""
        h, w = image.shape[:2]
        k = 1.0
        if min(h, w) < self.upscale_below:
            k = self.upscale_below / min(h, w)
        elif max(h, w) > self.max_side:
            k = self.max_side / max(h, w)
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

    def detect_one(self, image: np.ndarray, name: str = "the image") -> Detection:
        """The largest confident face, with every face found; ``NoFaceError`` if none."""
        faces = self.detect(image)
        chosen = choose_face(faces, self.min_confidence)
        if chosen is None:
            best = max((f.score for f in faces), default=None)
            extra = "" if best is None else f" (the best candidate had confidence {best:.2f} < {self.min_confidence:.2f})"
            raise NoFaceError(f"no face found in {name}{extra}; use a photo where the face is visible, frontal-ish and at least about 20 pixels wide")
        confident = tuple(f for f in faces if f.score >= self.min_confidence)
        return Detection(face=chosen, faces=confident, image_size=(image.shape[1], image.shape[0]))
