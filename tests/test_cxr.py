"""The chest X-ray bottleneck on a tiny random open_clip model, and its words."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.cxr import diagnose, prepare_cxr
from core.errors import ModelUnavailableError
from core.models import cxr as X
from core.text.descriptors import load_descriptors
from core.train import concept_targets, train_cxr_head

from .conftest import CXR
from .models.test_cbm import tiny_clip


def tiny_cxr(seed: int = 0) -> X.CXRBottleneck:
    model, tok = tiny_clip(seed)
    return X.cxr_bottleneck(model, tok)


def test_the_radiology_vocabulary_loads_and_explains_effusion():
    d = load_descriptors(X.RADIOLOGY)
    assert 50 <= len(d) <= 120 and "pleural effusion" in [g.name for g in d.groups]
    assert "blunted costophrenic angle" in d.descriptors


def test_prepare_keeps_the_centre_square():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, 50:150] = 255  # the centre square is white
    out = prepare_cxr(img, 32)
    assert out.shape == (32, 32, 3) and out.mean() > 250


@pytest.mark.needs_data
@pytest.mark.parametrize("name", ["00000001_000.png", "16747_3_1.jpg", "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"])
def test_zero_shot_diagnosis_of_real_xrays(name):
    model = tiny_cxr()
    r = diagnose(model, CXR / name, top=4)
    assert 0 <= r.probability <= 1 and r.effusion == (r.probability >= 0.5) and r.mode == "zero-shot"
    assert len(r.concepts) == 4 and [c["probability"] for c in r.concepts] == sorted((c["probability"] for c in r.concepts), reverse=True)
    assert "zero-shot" in r.text[0] and "not made through them" in r.text[-1] and r.image.shape == (32, 32, 3)
    with torch.no_grad():  # the zero-shot decision is CLIP's choice between the class prompts
        from core.cxr import to_batch

        out = model(to_batch(model, [r.image]))
    assert float(torch.softmax(out.logits, 1)[0, 1]) == pytest.approx(r.probability)


def test_concept_labels_raise_the_reports_concepts_to_the_top_score():
    s = torch.tensor([[0.1, 0.3, 0.2], [0.5, 0.0, 0.4]])
    present = torch.tensor([[True, False, False], [False, True, True]])
    torch.testing.assert_close(concept_targets(s, present), torch.tensor([[0.3, 0.3, 0.2], [0.5, 0.5, 0.5]]))


def test_two_supervised_steps_and_a_reloaded_head(tmp_path):
    model = tiny_cxr()
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.normal(size=(6, 3, 32, 32)).astype(np.float32))
    present = torch.zeros(6, len(model.descriptors), dtype=torch.bool)
    present[:3, model.descriptors.descriptors.index("large pleural effusion")] = True
    visual_before = {k: v.clone() for k, v in model.visual.state_dict().items()}
    losses = train_cxr_head(model, lambda idx: images[idx], present, [1, 1, 1, 0, 0, 0], batch_size=4, max_steps=2)
    assert len(losses) == 2 and all(np.isfinite(losses)) and model.supervised
    assert all(torch.equal(v, model.visual.state_dict()[k]) for k, v in visual_before.items())  # the tower stays frozen
    with torch.no_grad():
        want = model(images).logits
    path = X.save_cxr_head(model, tmp_path / "cxr_head.pt")
    again = X.load_cxr_head(tiny_cxr(), path)
    with torch.no_grad():
        torch.testing.assert_close(again(images).logits, want)
    img = (rng.random((40, 40, 3)) * 255).astype(np.uint8)
    r = diagnose(again, img, top=3)
    assert r.mode == "supervised" and [abs(c["weight"]) for c in r.concepts] == sorted((abs(c["weight"]) for c in r.concepts), reverse=True)
    with torch.no_grad():
        from core.cxr import to_batch

        probs = again(to_batch(again, [r.image])).probs[0]
    w = again.head.weight[1] - again.head.weight[0]
    i = again.descriptors.descriptors.index(r.concepts[0]["descriptor"])
    assert r.concepts[0]["weight"] == pytest.approx(float(probs[i] * w[i]), abs=1e-6)


def test_missing_weights_name_the_repository(tmp_path):
    with pytest.raises(ModelUnavailableError, match="BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"):
        X.load_cxr_clip()
    with pytest.raises(ModelUnavailableError, match=r"open_clip_config\.json"):
        X.load_cxr_clip(tmp_path)


def test_cxr_command_without_weights(capsys):
    from core.__main__ import main

    assert main(["cxr", "x.png"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "microsoft/BiomedCLIP" in err
    assert "open_clip_pytorch_model.bin" in err and "`python -m core fetch-weights cxr`" in err  # the weights too, and one command


@pytest.mark.needs_data
def test_the_whole_path_from_reports_to_scored_explanations():
    """Reports -> concept labels -> two supervised steps -> explained diagnoses -> ROUGE-L/METEOR."""
    from core.cxr import prepare_cxr, to_batch
    from core.evaluate.text import text_scores
    from core.io import load_image
    from core.text.reports import Report, mine_report

    reports = [Report("a", "Moderate right pleural effusion with blunting of the costophrenic angle.", "Enlarged cardiac silhouette."),
               Report("b", "The lungs are clear. No pleural effusion or pneumothorax.", ""),
               Report("c", "Small left pleural effusion. Sternotomy wires.", ""),
               Report("d", "Heart size is normal. No focal airspace disease.", "")]  # fmt: skip
    files = ["00000001_000.png", "00027426_000.png", "h0001.png", "tb0005.png"]
    mined = [mine_report(r) for r in reports]
    assert [m.effusion for m in mined] == [True, False, True, False]
    model = tiny_cxr()
    names = model.descriptors.descriptors
    present = torch.tensor([[d in m.concepts for d in names] for m in mined])
    crops = [prepare_cxr(load_image(CXR / f), 32) for f in files]
    losses = train_cxr_head(
        model, lambda idx: to_batch(model, [crops[i] for i in idx]), present, [int(m.effusion) for m in mined], max_steps=2, batch_size=2
    )
    assert len(losses) == 2
    results = [diagnose(model, CXR / f, top=3) for f in files]
    scores = text_scores([([c["descriptor"] for c in r.concepts], m.concepts) for r, m in zip(results, mined, strict=True)])
    assert scores.n == 4 and 0 <= scores.rouge_l <= 1 and 0 <= scores.meteor <= 1


def test_saliency_starts_from_shares_that_sum_to_the_logit():
    from core.cxr import _class_logit, saliency

    model = tiny_cxr()
    e = torch.randn(2, model.text.shape[1])
    for cls in (0, 1):
        logit, share = _class_logit(model, e, cls)
        assert torch.allclose(share.sum(1), logit, atol=1e-4)  # zero-shot: the logit is linear in n(e)
    img = np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    for method in ("vit_lrp", "vit_lrp_nograd", "rollout"):
        s = saliency(model, img, method)
        assert s.map.shape == (32, 32) and s.map.min() >= 0 and s.map.max() == pytest.approx(1.0)
    towards, against = saliency(model, img, "vit_lrp", effusion=True), saliency(model, img, "vit_lrp", effusion=False)
    assert towards.explained != against.explained and towards.logit != pytest.approx(against.logit)
    assert not np.allclose(towards.map, against.map)  # the evidence for one class is not the evidence for the other


def test_saliency_in_supervised_mode_uses_the_head():
    from core.cxr import _class_logit

    model = tiny_cxr()
    torch.manual_seed(1)
    model.add_head()
    e = torch.randn(1, model.text.shape[1])
    logit, share = _class_logit(model, e, 1)
    logits = model.head(model.score(torch.nn.functional.normalize(model.alpha * e + (1 - model.alpha) * model.adapter(e), dim=1))[1])
    assert logit.item() == pytest.approx(logits[0, 1].item(), abs=1e-5)
    assert share.abs().sum() > 0 and share.shape == e.shape


# -- the preview of an upload -----------------------------------------------------------------
def _dicom_from_png(path, png, center: float, width: float) -> bytes:
    """A 12-bit MONOCHROME2 DICOM of a real X-ray (a PNG), with a VOI window."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    from core.io import load_image

    gray = (load_image(png)[..., 0].astype(np.uint16) * 16).astype(np.uint16)  # 0..4080
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID, "CR"
    ds.Rows, ds.Columns = gray.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = center, width
    ds.PixelData = gray.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return gray


@pytest.mark.needs_data
@pytest.mark.parametrize(
    "name", ["00000001_000.png", "16747_3_1.jpg", "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm", "Fake_MONOHR1.dcm"]
)
def test_the_preview_is_what_the_diagnosis_reads_only_smaller(name):
    import cv2

    from core.cxr import preview
    from core.io import load_image

    full = load_image(CXR / name)
    out = preview(CXR / name)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3 and max(out.shape[:2]) <= 512
    if max(full.shape[:2]) <= 512:
        assert np.array_equal(out, full)
    else:
        assert max(out.shape[:2]) == 512 and abs(out.shape[0] / out.shape[1] - full.shape[0] / full.shape[1]) < 0.01
        assert np.array_equal(out, cv2.resize(full, out.shape[1::-1], interpolation=cv2.INTER_AREA))
    assert np.array_equal(preview((CXR / name).read_bytes()), out)  # an upload's bytes read the same
    with open(CXR / name, "rb") as f:
        assert np.array_equal(preview(f, max_side=128), preview(CXR / name, max_side=128))


@pytest.mark.needs_data
def test_a_dicom_preview_is_windowed_as_the_diagnosis_sees_it(tmp_path):
    from core.cxr import prepare_cxr, preview
    from core.io import load_image

    path = tmp_path / "chest.dcm"
    gray = _dicom_from_png(path, CXR / "h0001.png", center=2000.0, width=1000.0)
    out = preview(path, max_side=max(gray.shape))  # no shrinking: pixel for pixel
    assert out.shape == (*gray.shape, 3) and np.array_equal(out, load_image(path))
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    low, high = gray < 1500 - 1, gray > 2500
    assert low.any() and high.any()
    assert (out[low] == 0).all() and (out[high] == 255).all()  # the window, not the raw range
    raw = np.round(gray / gray.max() * 255).astype(np.uint8)
    assert not np.array_equal(out[..., 0], raw)
    small = preview(path)
    assert max(small.shape[:2]) <= 512
    model = tiny_cxr()
    assert np.array_equal(diagnose(model, path).image, prepare_cxr(out, 32))  # the diagnosis saw this picture


def test_a_wide_image_keeps_its_shape_and_small_ones_stay_as_they_are():
    from core.cxr import preview

    wide = np.random.default_rng(0).integers(0, 256, (300, 1200, 3), dtype=np.uint8)
    assert preview(wide).shape == (128, 512, 3) and preview(wide, max_side=100).shape == (25, 100, 3)
    thin = np.zeros((2000, 3, 3), np.uint8)
    assert preview(thin).shape == (512, 1, 3)
    small = wide[:40, :60]
    assert np.array_equal(preview(small), small)
    gray16 = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).astype(np.uint16)
    out = preview(gray16)
    assert out.dtype == np.uint8 and out.shape == (64, 64, 3)


@pytest.mark.parametrize("bad", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, None, 42])
def test_a_bad_upload_is_an_invalid_image_error(bad):
    from core.cxr import preview
    from core.errors import InvalidImageError

    with pytest.raises(InvalidImageError):
        preview(bad)


def test_a_truncated_dicom_is_an_invalid_image_error(tmp_path):
    from core.cxr import preview
    from core.errors import InvalidImageError

    data = bytes(128) + b"DICM" + b"\x02\x00\x10\x00UI" + b"\x00" * 40
    with pytest.raises(InvalidImageError, match="DICOM"):
        preview(data)
    with pytest.raises(ValueError, match="max_side"):
        preview(np.zeros((4, 4, 3), np.uint8), max_side=0)
