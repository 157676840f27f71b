"""Image loading and validation.

``load_image`` accepts a path, raw bytes, a binary file object, a PIL image or a numpy
array and returns an ``H x W x 3`` ``uint8`` RGB array. It applies the EXIF orientation,
converts grey, grey+alpha, RGBA, palette, CMYK, 1-bit, 16-bit and float images to RGB
(transparent pixels are composited on white), reads DICOM files (windowed to 8 bits), and
refuses anything else with an ``InvalidImageError`` that says why: empty or text files,
truncated or corrupt files, zero-sized images, images over the pixel limit (a guard
against decompression bombs), arrays of the wrong shape, type or with NaNs.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InvalidImageError

log = logging.getLogger(__name__)

#: Default pixel limit (width x height): about 50 megapixels.
MAX_PIXELS = 50_000_000
#: Largest file read into memory, in bytes.
MAX_FILE_BYTES = 200 * 1024 * 1024

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, Image.Image, np.ndarray]


def load_image(src: ImageInput, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read ``src`` into an ``H x W x 3`` ``uint8`` RGB array (see the module docstring)."""
    if isinstance(src, np.ndarray):
        return _from_array(src, max_pixels)
    if isinstance(src, Image.Image):
        return _from_pil(src, max_pixels, name="the image")
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.exists():
            raise InvalidImageError(f"{path}: no such file")
        if not path.is_file():
            raise InvalidImageError(f"{path}: not a file")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InvalidImageError(f"{path}: {size / 2**20:.0f} MiB is larger than the {MAX_FILE_BYTES / 2**20:.0f} MiB limit")
        data = path.read_bytes()
        return _from_bytes(data, max_pixels, name=str(path))
    if isinstance(src, (bytes, bytearray, memoryview)):
        return _from_bytes(bytes(src), max_pixels, name="the uploaded data")
    if hasattr(src, "read"):
        data = src.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise InvalidImageError(f"the stream is larger than the {MAX_FILE_BYTES / 2**20:.0f} MiB limit")
        return _from_bytes(data, max_pixels, name=getattr(src, "name", "the stream"))
    raise InvalidImageError(f"cannot read an image from a {type(src).__name__}; give a path, bytes, a PIL image or a numpy array")


def is_dicom(data: bytes) -> bool:
    """True for DICOM Part 10 files (the 'DICM' magic after the 128-byte preamble)."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def _from_bytes(data: bytes, max_pixels: int, name: str) -> np.ndarray:
    if len(data) == 0:
        raise InvalidImageError(f"{name} is empty (0 bytes)")
    if is_dicom(data):
        return _from_dicom(data, max_pixels, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            _check_size(img.size, max_pixels, name)
            img.load()
    except InvalidImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InvalidImageError(f"{name} is too large to decode safely ({e})") from e
    except UnidentifiedImageError as e:
        kind = "text, not an image" if _looks_like_text(data) else "not an image format this tool reads"
        raise InvalidImageError(f"{name} is {kind} (use JPEG, PNG, BMP, WebP, TIFF, GIF or DICOM)") from e
    except (
        OSError,
        ValueError,
        SyntaxError,
        EOFError,
        MemoryError,
        TypeError,
        IndexError,
        KeyError,
        ZeroDivisionError,
        AttributeError,
    ) as e:
        raise InvalidImageError(f"{name} is damaged or truncated and cannot be decoded ({type(e).__name__}: {e})") from e
    return _from_pil(img, max_pixels, name)


def _looks_like_text(data: bytes) -> bool:
    head = data[:1024]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _check_size(size: tuple[int, int], max_pixels: int, name: str) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise InvalidImageError(f"{name} has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise InvalidImageError(f"{name} is {w}x{h} = {w * h / 1e6:.1f} megapixels, over the limit of {max_pixels / 1e6:.1f}; downscale it first")


def _from_pil(img: Image.Image, max_pixels: int, name: str) -> np.ndarray:
    _check_size(img.size, max_pixels, name)
    try:
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        img = ImageOps.exif_transpose(img) or img
        mode = img.mode
        if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
            return _from_array(np.asarray(img), max_pixels)
        if mode == "P":
            img = img.convert("RGBA")
            mode = "RGBA"
        if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
            rgba = img.convert("RGBA")
            bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(bg, rgba)
        rgb = img.convert("RGB")
        arr = np.asarray(rgb, dtype=np.uint8)
    except InvalidImageError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, TypeError, IndexError, KeyError, ZeroDivisionError, AttributeError) as e:
        raise InvalidImageError(f"{name} could not be converted to RGB ({type(e).__name__}: {e})") from e
    return np.ascontiguousarray(arr)


def _to_uint8(a: np.ndarray) -> np.ndarray:
    """Scale a numeric array of any supported dtype to uint8."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise InvalidImageError("the image array contains NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo >= 0.0 and hi <= 1.0:
            return np.round(a * 255.0).astype(np.uint8)
        if lo >= 0.0 and hi <= 255.0:
            return np.round(a).astype(np.uint8)
        span = hi - lo
        return np.zeros(a.shape, np.uint8) if span == 0 else np.round((a - lo) / span * 255.0).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        lo, hi = int(a.min()), int(a.max())
        if lo >= 0 and hi <= 255:
            return a.astype(np.uint8)
        if lo >= 0 and hi <= 65535:  # 16-bit data
            return np.round(a.astype(np.float64) / 257.0).astype(np.uint8)
        span = hi - lo
        return np.zeros(a.shape, np.uint8) if span == 0 else np.round((a.astype(np.float64) - lo) / span * 255.0).astype(np.uint8)
    raise InvalidImageError(f"unsupported array dtype {a.dtype}; use uint8, uint16 or float")


def _from_array(a: np.ndarray, max_pixels: int) -> np.ndarray:
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_) or np.iscomplexobj(a):
        raise InvalidImageError(f"unsupported array dtype {a.dtype}; use uint8, uint16 or float")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise InvalidImageError(f"an image array must be HxW, HxWx1, HxWx3 or HxWx4, got shape {a.shape}")
    _check_size((a.shape[1], a.shape[0]), max_pixels, "the image array")
    if a.ndim == 3 and a.shape[2] == 4:
        rgb = _to_uint8(a[:, :, :3]).astype(np.float32)
        alpha = _to_uint8(a[:, :, 3]).astype(np.float32)[..., None] / 255.0
        out = np.round(rgb * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    else:
        out = _to_uint8(a)
        if out.ndim == 2:
            out = np.repeat(out[:, :, None], 3, axis=2)
    return np.ascontiguousarray(out)


def _from_dicom(data: bytes, max_pixels: int, name: str) -> np.ndarray:
    try:
        import pydicom
        from pydicom.pixels import apply_voi_lut
    except ImportError as e:  # pragma: no cover - pydicom is a requirement
        raise InvalidImageError(f"{name} is DICOM; reading it needs pydicom: pip install pydicom") from e
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        rows, cols = int(getattr(ds, "Rows", 0)), int(getattr(ds, "Columns", 0))
        _check_size((cols, rows), max_pixels, name)
        px = ds.pixel_array
        if px.ndim == 3 and px.shape[-1] != 3:  # multi-frame: first frame
            px = px[0]
        if px.ndim == 2:
            px = apply_voi_lut(px, ds).astype(np.float64)
            lo, hi = float(px.min()), float(px.max())
            px = (px - lo) / (hi - lo) if hi > lo else np.zeros_like(px)
            if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
                px = 1.0 - px
            return _from_array(px.astype(np.float32), max_pixels)
        return _from_array(px, max_pixels)
    except InvalidImageError:
        raise
    except Exception as e:  # pydicom raises many kinds; all mean "cannot read this DICOM"
        raise InvalidImageError(f"{name} looks like DICOM but could not be read ({type(e).__name__}: {e})") from e
