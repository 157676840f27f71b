"""dlib's ResNet face descriptor as a torch module (``core.models.dlib_resnet``): read from
the ``.dat`` file of face-recognition-models, equal to dlib's own descriptor on real faces."""

import numpy as np
import pytest
import torch

from core.errors import ModelUnavailableError
from core.models.dlib_resnet import (
    DAT_FILENAME,
    MEAN_RGB,
    DlibResNet,
    add_padded,
    find_dat,
    load_dlib_resnet_module,
    read_dlib_network,
)

from ..conftest import DEEPFACE, MISC


def _dat():
    try:
        return find_dat()
    except ModelUnavailableError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def port():
    _dat()
    return load_dlib_resnet_module()


def test_add_prev_zero_pads_the_smaller_tensor_at_its_end():
    a = torch.arange(2 * 3 * 3, dtype=torch.float32).view(1, 2, 3, 3)
    b = torch.ones(1, 1, 4, 4)
    out = add_padded(a, b)
    assert out.shape == (1, 2, 4, 4)
    torch.testing.assert_close(out[0, 0, :3, :3], a[0, 0] + 1)  # both
    torch.testing.assert_close(out[0, 1, :3, :3], a[0, 1])  # channel 1: only a
    assert out[0, 0, 3].tolist() == [1, 1, 1, 1] and out[0, 1, 3].tolist() == [0, 0, 0, 0]  # row 3: only b


def test_tiny_random_network_has_the_same_structure():
    net = DlibResNet(width=0.125, input_size=150, embedding_dim=16).eval()
    x = torch.rand(2, 3, 150, 150)
    assert net(x).shape == (2, 16)
    assert net.features(x).shape == (2, net.feature_channels, 2, 2)  # 150 -> 72 -> 35 -> 17 -> 8 -> 4 -> 2
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == 29


def test_the_file_reads_as_dlibs_layers_and_a_damaged_one_is_refused(tmp_path):
    data = _dat().read_bytes()
    inp, layers = read_dlib_network(data)
    assert inp["size"] == (150, 150) and np.allclose(inp["mean"], MEAN_RGB, atol=1e-3)
    assert inp["distance_threshold"] == pytest.approx(0.6) and inp["margin"] == pytest.approx(0.04)
    kinds = [la.kind for la in layers]
    assert kinds.count("con") == 29 and kinds.count("affine") == 29 and kinds[-1] == "fc" and kinds.count("add_prev") == 14
    with pytest.raises(ModelUnavailableError, match="not a dlib network file"):
        read_dlib_network(data[: len(data) // 2])
    bad = tmp_path / DAT_FILENAME
    bad.write_bytes(data[:-4] + b"1234")
    with pytest.raises(ModelUnavailableError, match="SHA-256"):
        load_dlib_resnet_module(bad)


def test_a_missing_package_names_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "face_recognition_models" else real(name, *a))
    with pytest.raises(ModelUnavailableError, match="pip install face-recognition-models"):
        find_dat()


@pytest.mark.needs_data
def test_the_port_equals_dlibs_own_descriptor_on_every_misc_face(port):
    """On dlib's own 150 px chips (its HOG detector, its 5-point shape predictor,
    ``get_face_chip``) of every photo in ``misc`` where dlib finds a face."""
    dlib = pytest.importorskip("dlib")
    from core.io import load_image

    models = find_dat().parent
    detector = dlib.get_frontal_face_detector()
    shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    rec = dlib.face_recognition_model_v1(str(find_dat()))
    chips = []
    for path in sorted(MISC.iterdir()):
        try:
            img = load_image(path)
        except Exception:
            continue
        for det in detector(img, 1):
            chips.append(dlib.get_face_chip(img, shape(img, det), size=150, padding=0.25))
    assert len(chips) >= 8
    ref = np.array([np.array(rec.compute_face_descriptor(c)) for c in chips])
    x = (torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float() - torch.tensor(MEAN_RGB).view(1, 3, 1, 1)) / 256.0
    with torch.no_grad():
        ours = port(x).numpy()
    cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.999, cos
    assert np.abs(ours - ref).max() < 1e-4  # the same numbers, not only the same direction


@pytest.mark.needs_data
def test_the_model_aligns_to_dlibs_chip_and_verifies_through_the_runner():
    from core import Runner
    from core.faces.align import template_for_size
    from core.registry import model_spec

    r = Runner(model="dlib_resnet", device="cpu")
    face = r.prepare(MISC / "obama.jpg")
    assert face.size == 150 and face.template == "dlib" == model_spec("dlib_resnet").alignment == r.embedder.alignment
    assert np.abs(face.landmarks - template_for_size(150, "dlib")).max() < 8  # the 5 points near dlib's chip's
    same = r.verify(MISC / "obama.jpg", MISC / "obama2.jpg")
    other = r.verify(MISC / "obama.jpg", MISC / "biden.jpg")
    assert same.same and not other.same and same.similarity > other.similarity
    again = r.prepare(face)  # an aligned face comes back as it is
    assert again is face
    assert Runner(device="cpu").prepare(face).template == "arcface"  # SFace warps it again onto its own template


@pytest.mark.needs_data
def test_cam_on_the_port_is_exact(port):
    """The head is the mean over the 2 x 2 map and a linear layer, so CAM's shares of the
    cosine add up to it (the global-average-pooling form)."""
    from core import Runner
    from core.explainers.cam import Cam

    r = Runner(model="dlib_resnet", device="cpu")
    pair = r.prepare_pair(DEEPFACE / "img1.jpg", DEEPFACE / "img2.jpg")
    exp = Cam().explain(pair, r.embedder)
    e = r.embedder.embed_faces([pair.a.image, pair.b.image])
    assert float(exp.extras["grid"][0].sum()) == pytest.approx(float(e[0] @ e[1]), abs=1e-4)


@pytest.mark.needs_data
def test_dlibs_own_inference_as_a_black_box_model_equals_the_port_and_runs_black_box_maps():
    pytest.importorskip("dlib")
    from core import Runner

    port, native = Runner(model="dlib_resnet", device="cpu"), Runner(model="dlib_resnet_native", device="cpu")
    crops = [port.prepare(p).image for p in (MISC / "obama.jpg", MISC / "biden.jpg", DEEPFACE / "img1.jpg")]
    a, b = port.embedder.embed_faces(crops), native.embedder.embed_faces(crops, batch_size=2)
    assert float((a * b).sum(1).min()) >= 0.9999
    assert not native.embedder.differentiable and native.embedder.alignment == "dlib"
    res = native.explain(MISC / "obama.jpg", MISC / "obama2.jpg", methods=["xmap2", "cam"], preset="fast")
    ok = {e.method: e.ok for e in res.explanations}
    assert res.same and ok["xmap2"] and res.explanations[0].maps[0].shape == (150, 150)
    assert "cam" not in ok or not ok["cam"]  # CAM needs gradients: skipped or refused, never faked


def test_folded_affines_give_the_same_descriptors():
    _dat()
    plain, folded = load_dlib_resnet_module(fold=False), load_dlib_resnet_module()
    assert sum(isinstance(m, torch.nn.Identity) for m in folded.modules()) == 29
    x = torch.rand(3, 3, 150, 150) - 0.5
    with torch.no_grad():
        assert float((plain(x) - folded(x)).abs().max()) < 1e-5
