"""Download-only models fail at once offline with a clear message; the same wrapping code
runs on tiny randomly initialised models of the same architectures."""

import numpy as np
import pytest
import torch

from core.errors import ModelUnavailableError, UnknownNameError
from core.registry import describe_models, get_embedder, model_names, model_spec

DOWNLOAD_ONLY = [n for n in model_names() if not model_spec(n).offline]


def test_the_registry_lists_the_default_and_the_download_models():
    names = model_names()
    assert names[0] == "sface" and model_spec("sface").offline
    assert {"facenet_vggface2", "adaface_ir101", "clip_vit_l14"} <= set(names)
    assert all(r["name"] == r["name"].lower() for r in describe_models())


def test_unknown_model():
    with pytest.raises(UnknownNameError, match="choose one of"):
        get_embedder("nope")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", DOWNLOAD_ONLY)
def test_offline_download_models_raise_a_clear_error(name, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ModelUnavailableError) as e:
        get_embedder(name, "cpu")
    msg = str(e.value)
    assert "download" in msg.lower() and "sface" in msg  # what to do, and the offline alternative


def _check_embedder(emb, n=3):
    faces = [np.random.default_rng(i).integers(0, 256, (emb.input_size,) * 2 + (3,), dtype=np.uint8) for i in range(n)]
    out = emb.embed_faces(faces)
    assert out.shape == (n, emb.embedding_dim)
    np.testing.assert_allclose(out.norm(dim=1).numpy(), 1.0, atol=1e-5)
    torch.testing.assert_close(emb.embed_faces(faces, batch_size=1), out, atol=1e-5, rtol=1e-4)
    # crops at another size are resized
    assert emb.embed_faces([faces[0][:50, :50]]).shape == (1, emb.embedding_dim)
    assert len(emb.weights_hash()) == 64


def test_tiny_open_clip_vit_as_face_embedder():
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    from core.models.clip import clip_embedder

    torch.manual_seed(0)
    model = CLIP(
        embed_dim=24,
        vision_cfg=CLIPVisionCfg(layers=2, width=32, head_width=16, patch_size=8, image_size=32),
        text_cfg=CLIPTextCfg(context_length=8, vocab_size=100, width=32, heads=2, layers=1),
    )
    emb = clip_embedder(model, "tiny_clip", "cpu")
    assert emb.input_size == 32 and emb.embedding_dim == 24
    _check_embedder(emb)
    from core.runner import model_capabilities

    assert {"vit", "gradients", "blackbox"} <= model_capabilities(emb)


def test_random_inception_resnet_as_facenet():
    from facenet_pytorch import InceptionResnetV1

    from core.models.facenet import facenet_embedder

    torch.manual_seed(0)
    emb = facenet_embedder(InceptionResnetV1(pretrained=None), "cpu")
    _check_embedder(emb, n=2)
    assert emb.features_module() is not None


def test_adaface_wrapper_keeps_the_embedding_of_a_tuple_output():
    from core.models.hub import adaface_embedder

    class TupleNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, stride=4)
            self.fc = torch.nn.Linear(4 * 28 * 28, 8)

        def forward(self, x):
            e = self.fc(self.conv(x).flatten(1))
            return e, e.norm(dim=1, keepdim=True)

    emb = adaface_embedder(TupleNet(), "cpu", embedding_dim=8)
    _check_embedder(emb)
