import cv2
import numpy as np
import pytest

from core.errors import InvalidImageError, NoFaceError
from core.faces.detect import FaceDetector, choose_face
from core.io import load_image
from core.types import DetectedFace

from ..conftest import DEEPFACE, MISC


def _face(x1, y1, x2, y2, score):
    return DetectedFace(np.array([x1, y1, x2, y2], np.float32), np.zeros((5, 2), np.float32), score)


def test_choose_face_takes_the_largest_confident_one():
    small_sure = _face(0, 0, 10, 10, 0.999)
    big_unsure = _face(0, 0, 100, 100, 0.5)
    mid_sure = _face(0, 0, 50, 50, 0.95)
    assert choose_face([small_sure, big_unsure, mid_sure], 0.9) is mid_sure
    assert choose_face([big_unsure], 0.9) is None


@pytest.mark.needs_data
def test_single_face_has_no_note(runner):
    det = runner.detector.detect_one(load_image(MISC / "obama.jpg"))
    assert det.n_faces == 1 and det.note is None
    lm = det.face.landmarks
    assert lm[0, 0] < lm[1, 0]  # the eye on the image's left comes first
    assert lm[3, 1] > lm[2, 1] > lm[0, 1]  # mouth below nose below eyes


@pytest.mark.needs_data
@pytest.mark.parametrize("name", ["two_people.jpg"])
def test_several_faces_pick_the_largest_and_say_so(runner, name):
    img = load_image(MISC / name)
    det = runner.detector.detect_one(img)
    assert det.n_faces >= 2
    assert det.face.area == max(f.area for f in det.faces)
    assert "faces were found" in det.note


@pytest.mark.needs_data
def test_group_photo_note(runner):
    det = runner.detector.detect_one(load_image(DEEPFACE / "couple.jpg"))
    assert det.n_faces == 2 and det.note


def test_blank_image_has_no_face(runner):
    with pytest.raises(NoFaceError, match="no face found"):
        runner.detector.detect_one(np.full((200, 200, 3), 127, np.uint8))


@pytest.mark.needs_data
@pytest.mark.parametrize("path", sorted(MISC.glob("*")), ids=lambda p: p.name)
def test_every_misc_file_gives_a_face_or_a_typed_error(runner, path):
    try:
        face = runner.prepare(path)
    except (NoFaceError, InvalidImageError) as e:
        assert str(e)
        return
    assert face.image.shape == (runner.embedder.input_size,) * 2 + (3,)


@pytest.mark.needs_data
def test_tiny_image_is_upscaled_not_refused(runner):
    # a 48x48 thumbnail of a real face still gives a face
    img = load_image(MISC / "obama.jpg")
    det = runner.detector.detect_one(img)
    x1, y1, x2, y2 = (int(v) for v in det.face.box)
    pad = (x2 - x1) // 3
    crop = img[max(0, y1 - pad) : y2 + pad, max(0, x1 - pad) : x2 + pad]
    thumb = cv2.resize(crop, (48, 48), interpolation=cv2.INTER_AREA)
    small = runner.detector.detect_one(thumb)
    assert small.face.box[2] <= 48 + 1  # coordinates are in the thumbnail's frame


@pytest.mark.parametrize(("h", "w"), [(1, 2000), (1, 20000), (20000, 1), (19, 500), (8, 8)])
def test_an_image_too_small_for_a_face_is_refused_before_detection(h, w):
    detector = FaceDetector(device="cpu")
    with pytest.raises(NoFaceError, match=r"too small to hold a face.*use a larger photo"):
        detector.detect_one(np.zeros((h, w, 3), np.uint8), "x.png")
    assert detector._mtcnn is None  # no model loaded, no image resized


def test_a_very_thin_image_is_refused_as_too_elongated():
    with pytest.raises(NoFaceError, match=r"too elongated.*crop it around the face"):
        FaceDetector(device="cpu").scale_for(100, 20000)


@pytest.mark.parametrize(
    ("h", "w"), [(20, 20), (20, 1000), (48, 48), (100, 2000), (159, 160), (400, 20000), (1000, 1000), (5773, 8660), (160, 5000), (30000, 1500)]
)
def test_the_image_mtcnn_sees_never_exceeds_its_budget(h, w):
    detector = FaceDetector(device="cpu")
    k = detector.scale_for(h, w)
    sh, sw = round(h * k), round(w * k)
    assert max(sh, sw) <= detector.max_side and sh * sw <= detector.max_pixels * 1.01
    assert min(sh, sw) >= detector.min_face_size
    if max(h, w) * detector.upscale_below / min(h, w) <= detector.max_side:
        assert min(sh, sw) >= min(min(h, w), detector.upscale_below)  # thumbnails still upscaled as before


def test_a_custom_pixel_budget_is_kept():
    detector = FaceDetector(device="cpu", max_side=4096, max_pixels=500_000)
    assert (3000 * detector.scale_for(3000, 3000)) ** 2 <= 500_000 * 1.001


@pytest.mark.needs_data
def test_a_chosen_face_is_used_and_said_and_a_missing_one_names_the_range(runner):
    from core.errors import InvalidParameterError

    img = load_image(MISC / "two_people.jpg")
    largest = runner.detector.detect_one(img)
    second = runner.detector.detect_one(img, "photo A", face=1)
    assert second.n_faces == largest.n_faces == 2 and second.chosen == 1 and largest.chosen is None
    assert np.array_equal(second.face.box, largest.faces[1].box) and not np.array_equal(second.face.box, largest.face.box)
    assert "face 2" in second.note and "as chosen" in second.note and "face 1" in largest.note
    with pytest.raises(InvalidParameterError, match=r"face 3 of photo A .* has 2 faces: choose 1 to 2"):
        runner.detector.detect_one(img, "photo A", face=2)
