import contextlib
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageOps

from core import io as core_io
from core.errors import InvalidImageError
from core.io import load_image

from .conftest import CXR, MISC


def _png(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_inputs_of_every_kind_give_the_same_rgb(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    data = _png(img)
    p = tmp_path / "x.png"
    p.write_bytes(data)
    for src in (arr, img, data, str(p), p, io.BytesIO(data), bytearray(data)):
        out = load_image(src)
        assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
        np.testing.assert_array_equal(out, arr)


def test_grey_palette_cmyk_and_1bit_become_rgb():
    grey = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16))
    out = load_image(_png(grey))
    assert out.shape == (16, 16, 3) and (out[..., 0] == out[..., 1]).all()
    np.testing.assert_array_equal(out[..., 0], np.asarray(grey))
    pal = grey.convert("P")
    assert load_image(_png(pal)).shape == (16, 16, 3)
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    out = load_image(_png(cmyk, "JPEG", quality=100))
    assert out[..., 0].mean() > 200 and out[..., 1].mean() < 60
    assert load_image(_png(Image.new("1", (8, 8), 1))).min() == 255


def test_rgba_is_composited_on_white():
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., 0] = 255  # red, fully transparent on the left half
    a[:, 2:, 3] = 255
    out = load_image(_png(Image.fromarray(a, "RGBA")))
    np.testing.assert_array_equal(out[:, :2], 255)
    assert (out[:, 2:] == [255, 0, 0]).all()


@pytest.mark.needs_data
def test_real_rgba_png_loads():
    out = load_image(MISC / "32bit.png")
    assert out.ndim == 3 and out.shape[2] == 3


def test_16_bit_images_are_scaled_not_clipped():
    a16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    out = load_image(_png(Image.fromarray(a16)))
    assert out.max() > 200  # 63000 / 257 ~ 245: scaled, not clipped to 255 everywhere
    np.testing.assert_array_equal(out[..., 0], np.round(a16 / 257.0).astype(np.uint8))
    assert load_image(a16).shape == (8, 8, 3)


def test_exif_orientation_is_applied():
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :10] = 255  # left half white
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = load_image(_png(img, "JPEG", exif=exif.tobytes(), quality=100))
    assert out.shape == (20, 10, 3)
    assert out[:10].mean() > 200 and out[10:].mean() < 50  # white half now on top


def test_float_arrays():
    f = np.linspace(0, 1, 48, dtype=np.float32).reshape(4, 4, 3)
    np.testing.assert_array_equal(load_image(f), np.round(f * 255).astype(np.uint8))
    with pytest.raises(InvalidImageError, match="NaN"):
        load_image(np.full((4, 4), np.nan))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"hello, this is a text file\n" * 10, "text"),
        (b"\x00\x01\x02garbage" * 30, "not an image"),
    ],
)
def test_bad_bytes_raise_a_clear_error(data, match):
    with pytest.raises(InvalidImageError, match=match):
        load_image(data)


def test_truncated_jpeg():
    data = _png(Image.new("RGB", (64, 64), (10, 200, 30)), "JPEG")
    with pytest.raises(InvalidImageError, match="damaged or truncated"):
        load_image(data[: len(data) // 2])


@pytest.mark.parametrize("shape", [(0, 5, 3), (5, 0), (0, 0), (3,), (2, 2, 2, 3), (4, 4, 2), (4, 4, 5)])
def test_bad_array_shapes(shape):
    with pytest.raises(InvalidImageError):
        load_image(np.zeros(shape, np.uint8))


def test_pixel_limit_guards_against_bombs():
    big = _png(Image.new("L", (3000, 3000)))
    with pytest.raises(InvalidImageError, match="megapixels"):
        load_image(big, max_pixels=1_000_000)
    assert load_image(big, max_pixels=10_000_000).shape == (3000, 3000, 3)


def test_missing_file_and_wrong_type(tmp_path):
    with pytest.raises(InvalidImageError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(InvalidImageError, match="not a file"):
        load_image(tmp_path)
    with pytest.raises(InvalidImageError, match="cannot read"):
        load_image(12345)  # type: ignore[arg-type]
    with pytest.raises(InvalidImageError, match="dtype"):
        load_image(np.array([["a"]]))


@pytest.mark.needs_data
@pytest.mark.parametrize("name", ["Fake_MONOHR1.dcm", "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"])
def test_dicom(name):
    out = load_image(CXR / name)
    assert out.ndim == 3 and out.dtype == np.uint8 and out.max() > out.min()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes_never_crash(data):
    try:
        out = load_image(data)
    except InvalidImageError:
        return
    assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=1, max_size=2048), st.integers(0, 4000))
def test_corrupted_real_png_never_crashes(noise, offset):
    data = bytearray(_png(Image.new("RGB", (32, 32), (1, 2, 3))))
    pos = offset % len(data)
    data[pos : pos + len(noise)] = noise
    with contextlib.suppress(InvalidImageError):
        load_image(bytes(data))


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64, np.bool_]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=12),
        elements=None,
    )
)
def test_random_arrays_never_crash(a):
    try:
        out = load_image(a)
    except InvalidImageError:
        return
    assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8
    assert out.shape[:2] == a.shape[:2]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow(orientation):
    arr = np.random.default_rng(orientation).integers(0, 256, (7, 12, 4), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _png(Image.fromarray(arr, "RGBA"), exif=exif.tobytes())
    shown = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    expected = Image.alpha_composite(Image.new("RGBA", shown.size, (255,) * 4), shown.convert("RGBA")).convert("RGB")
    np.testing.assert_array_equal(load_image(data), np.asarray(expected))


@pytest.mark.parametrize("mode", ["RGBA", "P", "I;16", "CMYK", "LA", "F", "1"])
def test_block_wise_conversion_is_exact(monkeypatch, mode):
    rng = np.random.default_rng(0)
    if mode in ("I;16", "F"):
        a = rng.integers(0, 60000, (37, 23)).astype(np.uint16 if mode == "I;16" else np.float32)
        img = Image.fromarray(a) if mode == "I;16" else Image.fromarray(a, "F")
    else:
        img = Image.fromarray(rng.integers(0, 256, (37, 23, 4), dtype=np.uint8), "RGBA").convert(mode)
    whole = load_image(img)
    monkeypatch.setattr(core_io, "BLOCK_PIXELS", 50)  # two rows a block
    np.testing.assert_array_equal(load_image(img), whole)


def test_every_allowed_format_loads(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    for fmt, kw in [
        ("PNG", {}),
        ("BMP", {}),
        ("TIFF", {"compression": "tiff_lzw"}),
        ("WEBP", {"lossless": True}),
        ("GIF", {}),
        ("JPEG", {}),
        ("MPO", {}),
    ]:
        out = load_image(_png(img, fmt, **kw), name=f"x.{fmt.lower()}")
        assert out.shape == (16, 24, 3), fmt
        if fmt in ("PNG", "BMP", "TIFF", "WEBP"):
            np.testing.assert_array_equal(out, arr)
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert (load_image(buf.getvalue())[..., 0] > 200).all()  # the first frame
