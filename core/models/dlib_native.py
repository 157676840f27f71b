"""dlib's ResNet face descriptor run by dlib itself (its C++ ``face_recognition_model_v1``),
as a black-box ``FaceEmbedder``: the reference the torch port (``core.models.dlib_resnet``)
is checked against, and a model for the black-box explainers (X-Maps, removal, RISE) that
does not depend on the port.

It takes the same 150 px crops as the port (MTCNN's five points on the ``dlib`` template of
``core.faces.align``) and hands them to ``compute_face_descriptor`` as a list (dlib's batched
call). ``preprocess`` keeps the pixels as they are (float 0-255), so masks may be applied
after it; ``embed`` rounds them back to uint8, as dlib reads images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ModelUnavailableError
from .base import BatchedEmbedding
from .dlib_resnet import DAT_SHA256, EMBEDDING_DIM, INPUT_SIZE, find_dat


class DlibNativeEmbedder(BatchedEmbedding):
    """dlib's own inference of the ResNet descriptor (no gradients)."""

    name = "dlib_resnet_native"
    input_size = INPUT_SIZE
    embedding_dim = EMBEDDING_DIM
    differentiable = False
    alignment = "dlib"
    affine_preprocess = True

    def __init__(self, batch_size: int = 16) -> None:
        try:
            import dlib
        except ImportError as e:
            raise ModelUnavailableError("dlib_resnet_native needs dlib: pip install dlib-bin==20.0.1.post1") from e
        self._model: Any = dlib.face_recognition_model_v1(str(find_dat()))
        self.device = torch.device("cpu")
        self.batch_size = int(batch_size)

    def weights_hash(self) -> str:
        return DAT_SHA256

    def preprocess(self, faces: Sequence[np.ndarray]) -> torch.Tensor:
        if len(faces) == 0:
            raise ValueError("preprocess needs at least one face")
        out = []
        for f in faces:
            f = np.asarray(f)
            if f.shape != (INPUT_SIZE, INPUT_SIZE, 3) or f.dtype != np.uint8:
                raise ValueError(f"dlib_resnet_native takes 150 x 150 RGB uint8 crops, got {f.dtype} {f.shape}")
            out.append(f)
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float()

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        chips = batch.detach().round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        descriptors = self._model.compute_face_descriptor([np.ascontiguousarray(c) for c in chips])
        return F.normalize(torch.tensor(np.array([np.array(d) for d in descriptors]), dtype=torch.float32), dim=1)
