import numpy as np
import pytest
import torch

from core.errors import ModelUnavailableError
from core.models.base import TorchEmbedder
from core.models.sface import SFaceNet, _dequantize, find_onnx, load_sface_module

from ..conftest import DEEPFACE, MISC


def test_blocked_dequantisation_follows_onnx():
    q = np.array([[1, 2, 3, 4, 5]], np.int8)
    scale = np.array([[0.5, 2.0, 10.0]], np.float32)  # blocks of 2 along axis 1
    zero = np.array([[1, 0, 5]], np.int8)
    out = _dequantize(q, scale, zero, axis=1, block=2)
    np.testing.assert_allclose(out, [[0.0, 0.5, 6.0, 8.0, 0.0]])


def test_tiny_random_sface_has_the_same_structure():
    net = SFaceNet(width=0.125, input_size=32, embedding_dim=16).eval()
    x = torch.rand(3, 3, 32, 32) * 255
    assert net(x).shape == (3, 16)
    assert net.features(x).shape == (3, net.feature_channels, 2, 2)
    with pytest.raises(ValueError):
        SFaceNet(input_size=100)


def test_hash_is_checked(tmp_path):
    bad = tmp_path / "sface.onnx"
    bad.write_bytes(find_onnx().read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelUnavailableError, match="SHA-256"):
        load_sface_module(bad)


@pytest.fixture(scope="module")
def sface():
    return load_sface_module()


@pytest.mark.needs_data
def test_port_matches_opencv_dnn_on_real_aligned_faces(runner, sface):
    """The torch port gives the embeddings of OpenCV's DNN on the original ONNX file."""
    import cv2

    names = [MISC / "obama.jpg", MISC / "biden.jpg", DEEPFACE / "img1.jpg", DEEPFACE / "img20.jpg"]
    crops = [runner.prepare(p).image for p in names]
    # input named 'data': BGR float 0-255, as OpenCV reads images
    blob = np.stack([c[:, :, ::-1] for c in crops]).astype(np.float32).transpose(0, 3, 1, 2).copy()
    net = cv2.dnn.readNetFromONNX(str(find_onnx()))
    ref = []
    for i in range(len(blob)):
        net.setInput(blob[i : i + 1], "data")
        ref.append(net.forward().reshape(-1))
    ref = np.stack(ref)
    with torch.no_grad():
        ours = sface(torch.from_numpy(blob)).numpy()
    cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.999, cos


def test_batched_equals_unbatched(sface):
    emb = TorchEmbedder("sface", sface, 112, 128, device="cpu")
    faces = [np.random.default_rng(i).integers(0, 256, (112, 112, 3), dtype=np.uint8) for i in range(5)]
    a = emb.embed_faces(faces, batch_size=5)
    b = emb.embed_faces(faces, batch_size=1)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(torch.linalg.norm(a, dim=1).numpy(), 1.0, atol=1e-5)


def test_gradients_flow_to_the_input(sface):
    emb = TorchEmbedder("sface", sface, 112, 128, device="cpu")
    x = emb.preprocess([np.full((112, 112, 3), 100, np.uint8)]).requires_grad_(True)
    emb.embed(x)[0, 0].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.needs_data
def test_folded_batch_norms_give_the_same_embeddings(runner):
    plain, folded = load_sface_module(fold=False), load_sface_module()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.features.modules())
    crops = [runner.prepare(p).image for p in (MISC / "obama.jpg", MISC / "biden.jpg", DEEPFACE / "img1.jpg")]
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        a, b = torch.nn.functional.normalize(plain(x), dim=1), torch.nn.functional.normalize(folded(x), dim=1)
    assert float((a - b).abs().max()) < 1e-5
