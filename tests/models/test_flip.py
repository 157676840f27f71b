"""Test-time flip averaging (``core.models.flip``) for any embedder."""

import numpy as np
import torch
import torch.nn.functional as F

from core.models.base import TorchEmbedder
from core.models.flip import FlipAveraged


class Asymmetric(torch.nn.Module):
    """A tiny model that sees left and right differently (so flipping matters)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 8 * 8, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.conv(x / 255), 8).flatten(1))


def _crops(n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(n)]


def test_the_embedding_is_the_normalised_mean_of_the_crop_and_its_mirror():
    inner = TorchEmbedder("tiny", Asymmetric(), 32, 6, device="cpu")
    flip = FlipAveraged(inner)
    crops = _crops()
    got = flip.embed_faces(crops, batch_size=2)
    plain, mirrored = inner.embed_faces(crops), inner.embed_faces([c[:, ::-1].copy() for c in crops])
    torch.testing.assert_close(got, F.normalize(plain + mirrored, dim=1))
    assert float((got - plain).abs().max()) > 1e-3  # the model is not mirror-symmetric: averaging changes it
    torch.testing.assert_close(flip.embed_faces([c[:, ::-1].copy() for c in crops]), got)  # a mirrored photo embeds the same
    assert flip.name == "tiny_flip" and not flip.differentiable and flip.input_size == 32 and flip.weights_hash() == inner.weights_hash()


def test_the_offline_models_have_flip_variants_with_their_own_calibration():
    from core.registry import get_embedder, model_spec
    from core.verify.calibration import load_calibration

    for base in ("sface", "dlib_resnet"):
        spec = model_spec(f"{base}_flip")
        assert spec.offline and not spec.differentiable and spec.alignment == model_spec(base).alignment
        cal = load_calibration(f"{base}_flip")
        assert cal.model == f"{base}_flip" and cal.threshold_similarity != load_calibration(base).threshold_similarity
    emb = get_embedder("sface_flip", "cpu")  # built from the cached sface (the registry's lock is re-entrant)
    assert emb.inner is get_embedder("sface", "cpu")
