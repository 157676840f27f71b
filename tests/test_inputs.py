"""Decoded uploads that remember their file: the audit report names the file and its SHA-256."""

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from core.errors import InvalidImageError
from core.inputs import SourcedImage, load_upload
from core.report import input_record


def _png(shape=(24, 32, 3), value=120) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full(shape, value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_an_upload_is_decoded_and_remembers_its_file():
    data = _png()
    img = load_upload(data, "/tmp/somewhere/probe.png")
    assert isinstance(img, SourcedImage) and img.shape == (24, 32, 3) and int(img[0, 0, 0]) == 120
    rec = input_record(img)
    assert rec["name"] == "probe.png" and rec["of"] == "file" and rec["sha256"] == hashlib.sha256(data).hexdigest()
    assert input_record(img, name="photo A.png")["name"] == "photo A.png"


def test_arrays_derived_from_an_upload_are_not_that_file():
    img = load_upload(_png(), "probe.png")
    crop = img[2:10, 2:10]
    assert getattr(crop, "source", None) is None
    rec = input_record(crop)
    assert rec["of"] == "array" and rec["sha256"] == hashlib.sha256(np.ascontiguousarray(crop).tobytes()).hexdigest()
    plain = input_record(np.asarray(img))  # the same pixels as a plain array: hashed as pixels, not as the file
    assert plain["of"] == "array" and plain["sha256"] != input_record(img)["sha256"]


def test_an_upload_over_the_page_limit_says_its_size_and_the_limit():
    data = _png()
    with pytest.raises(InvalidImageError, match=r"big\.png is 0\.0 MB, over the 0 MB a photo may have here"):
        load_upload(data, "big.png", max_bytes=len(data) - 1)
    with pytest.raises(InvalidImageError, match="not an image"):
        load_upload(b"hello, this is text" * 10, "notes.jpg")
