"""Image loading and validation.

``load_image`` accepts a path, raw bytes, a binary file object, a PIL image or a numpy
array and returns an ``H x W x 3`` ``uint8`` RGB array. It applies the EXIF orientation,
converts grey, grey+alpha, RGBA, palette, CMYK, 1-bit, 16-bit and float images to RGB
(transparent pixels are composited on white) and reads DICOM files (the first frame,
windowed to 8 bits).

The app is public, so one upload must not be able to take the server down. Every decode
has a budget, checked from the header before the memory is spent:

- formats: JPEG (and MPO), PNG, WebP, BMP, TIFF, GIF (first frame) and DICOM
  (``ALLOWED_FORMATS``); any other format is refused by name without being decoded;
- pixels: ``MAX_PIXELS`` per image (per frame for DICOM);
- bytes: ``MAX_FILE_BYTES`` read, ``MAX_INFLATED_BYTES`` for a deflated DICOM dataset,
  ``MAX_BYTES_PER_PIXEL`` for a DICOM frame, ``MAX_PNG_TEXT_BYTES`` for PNG text chunks;
- frames: ``MAX_FRAMES`` per DICOM file, of which only the first is decoded.

Conversion to RGB runs on blocks of about ``BLOCK_PIXELS`` pixels, so a load costs the
decoded image (at most 4 bytes a pixel) plus the 3-byte-a-pixel result and little else.
Whatever cannot be read raises an ``InvalidImageError`` that says why and what to do. DICOM
files are read by ``core.dicom`` within the same budgets.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import stat
from collections.abc import Callable, Iterator
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from .errors import InvalidImageError

log = logging.getLogger(__name__)

#: Default pixel limit (width x height, per frame): about 50 megapixels.
MAX_PIXELS = 50_000_000
#: Largest file (or stream) read into memory, in bytes.
MAX_FILE_BYTES = 200 * 1024 * 1024
#: Largest size a deflated DICOM dataset may inflate to.
MAX_INFLATED_BYTES = 128 * 1024 * 1024
#: Largest DICOM frame, in bytes per pixel of the pixel limit: 32-bit grey up to the limit,
#: 16-bit RGB (6 bytes a pixel) up to two thirds of it.
MAX_BYTES_PER_PIXEL = 4
#: Most frames a DICOM file may declare (only the first is decoded).
MAX_FRAMES = 1000
#: Budget for the text chunks of one PNG, inflated (Pillow's MAX_TEXT_MEMORY, lowered).
MAX_PNG_TEXT_BYTES = 8 * 1024 * 1024
#: Pixels converted at a time.
BLOCK_PIXELS = 1 << 20
#: Image formats allowed to decode (Pillow's names; MPO comes through Pillow's JPEG plugin,
#: DICOM through pydicom).
ALLOWED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF")

_USE = "use JPEG, PNG, WebP, BMP, TIFF, GIF or DICOM"
_AGAIN = "use the original file, or save it again as PNG or JPEG"
_RLE_EXPANSION = 64  # PackBits turns 2 bytes into at most 128
PngImagePlugin.MAX_TEXT_MEMORY = min(PngImagePlugin.MAX_TEXT_MEMORY, MAX_PNG_TEXT_BYTES)

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, Image.Image, np.ndarray]


def load_image(src: ImageInput, *, max_pixels: int = MAX_PIXELS, name: str | None = None) -> np.ndarray:
    """Read ``src`` into an ``H x W x 3`` ``uint8`` RGB array (see the module docstring).
    ``name`` is what error messages call the image (default: its path, or "the image")."""
    if isinstance(src, np.ndarray):
        return _from_array(src, max_pixels, name or "the image array")
    if isinstance(src, Image.Image):
        return _from_pil(src, max_pixels, name=name or "the image")
    if isinstance(src, (str, os.PathLike)):
        label = _short(name or str(src))
        return _from_bytes(_read_path(src, label), max_pixels, name=label)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return _from_bytes(bytes(src), max_pixels, name=name or "the uploaded data")
    if hasattr(src, "read"):
        label = name or (src.name if isinstance(getattr(src, "name", None), str) else "the stream")
        try:
            data = src.read(MAX_FILE_BYTES + 1)
        except Exception as e:  # any reader (files, uploads, sockets) may fail in its own way
            raise InvalidImageError(f"{label} could not be read ({type(e).__name__}: {e}); upload or open it again") from e
        if isinstance(data, str):
            raise InvalidImageError(f"{label} was opened in text mode; open it in binary mode ('rb')")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidImageError(f"{label}: read() gave a {type(data).__name__}, not bytes; pass a binary file object")
        if len(data) > MAX_FILE_BYTES:
            raise InvalidImageError(f"{label} is larger than the {MAX_FILE_BYTES / 2**20:.0f} MiB limit")
        return _from_bytes(bytes(data), max_pixels, name=label)
    raise InvalidImageError(f"cannot read an image from a {type(src).__name__}; give a path, bytes, a PIL image or a numpy array")


def is_dicom(data: bytes) -> bool:
    """True for DICOM Part 10 files (the 'DICM' magic after the 128-byte preamble)."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def _short(label: str) -> str:
    return label if len(label) <= 160 else f"{label[:60]}...{label[-60:]}"


_PATH_ADVICE: dict[int | None, str] = {errno.ENAMETOOLONG: "use a shorter file name or path", errno.EACCES: "check its permissions"}


def _read_path(src: str | os.PathLike, label: str) -> bytes:
    def fail(e: Exception) -> InvalidImageError:
        advice = _PATH_ADVICE.get(getattr(e, "errno", None), "check the path")
        return InvalidImageError(f"{label}: cannot be read ({getattr(e, 'strerror', None) or e}); {advice}")

    try:
        st = os.stat(src)
    except FileNotFoundError:
        raise InvalidImageError(f"{label}: no such file") from None
    except (OSError, ValueError) as e:  # too long, a NUL byte, no permission, a loop of links...
        raise fail(e) from e
    if not stat.S_ISREG(st.st_mode):
        raise InvalidImageError(f"{label}: not a file")
    if st.st_size > MAX_FILE_BYTES:
        raise InvalidImageError(f"{label}: {st.st_size / 2**20:.0f} MiB is larger than the {MAX_FILE_BYTES / 2**20:.0f} MiB limit")
    try:
        with open(src, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise fail(e) from e
    if len(data) > MAX_FILE_BYTES:
        raise InvalidImageError(f"{label} is larger than the {MAX_FILE_BYTES / 2**20:.0f} MiB limit")
    return data


# -- formats --------------------------------------------------------------------------------

_MAGIC = (
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (b"PK\x05\x06", "a ZIP archive"),
    (b"\x1f\x8b", "gzip-compressed data (decompress it first)"),
    (b"BZh", "bzip2-compressed data (decompress it first)"),
    (b"\xfd7zXZ\x00", "xz-compressed data (decompress it first)"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
)
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")


def _sniff(data: bytes) -> str | None:
    """What a file is, from its first bytes, for formats no allowed plugin reads."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "an AVIF image"
        if brand in _HEIF_BRANDS:
            return "a HEIC/HEIF image (what iPhones save; export or share it as JPEG)"
        return "an MP4/QuickTime video or other ISO media file"
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<") and b"<svg" in head:
        return "an SVG drawing (vector graphics)"
    return None


def _pillow_kind(data: bytes, name: str) -> str | None:
    """The refused Pillow format ``data`` is in: a plugin's magic-number check confirmed by
    parsing the header (never the pixels); for formats without a magic number (TGA, ...),
    only when the file name's extension says so too."""
    Image.init()
    prefix, ext, guess = data[:16], os.path.splitext(name)[1].lower(), None
    for fmt in Image.ID:
        factory, accept = Image.OPEN[fmt]
        if fmt in ALLOWED_FORMATS or (accept is None and Image.registered_extensions().get(ext) != fmt):
            continue
        try:
            found = True if accept is None else accept(prefix)
        except Exception:  # a plugin's check failing means "not this format"
            continue
        if not found or isinstance(found, str):
            continue
        desc = str(getattr(factory, "format_description", "") or "").split(" (")[0]
        kind = f"{'an' if fmt[0] in 'AEIOU' or fmt in _AN else 'a'} {fmt} file" + (f" ({desc})" if desc and desc.upper() != fmt else "")
        try:
            Image.open(io.BytesIO(data[: 1 << 16]), formats=[fmt]).close()  # a header fits in 64 KiB
        except Image.DecompressionBombError:  # the header was read: its size is absurd
            return kind
        except Exception:  # not this format after all (several share a magic number)
            guess = guess or (kind if accept is not None else None)
            continue
        return kind
    return guess


_AN = ("SGI", "XBM", "XPM", "MSP", "HDF5", "FLI")


def _looks_like_text(data: bytes) -> bool:
    head = data[:1024]
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _from_bytes(data: bytes, max_pixels: int, name: str) -> np.ndarray:
    if len(data) == 0:
        raise InvalidImageError(f"{name} is empty (0 bytes)")
    if is_dicom(data):
        from .dicom import from_dicom

        return from_dicom(data, max_pixels, name)
    kind = _sniff(data)
    if kind:
        raise InvalidImageError(f"{name} is {kind}, which this tool does not read; {_USE}")
    try:
        Image.init()
        img = Image.open(io.BytesIO(data), formats=[f for f in ALLOWED_FORMATS if f in Image.OPEN])
        _check_size(img.size, max_pixels, name)
        if img.format == "TIFF":
            _check_tiff_tiles(img, name)
        img.load()
    except InvalidImageError:
        raise
    except Image.DecompressionBombError as e:
        raise InvalidImageError(f"{name} is too large to decode safely ({e})") from e
    except UnidentifiedImageError as e:
        kind = _pillow_kind(data, name)
        if kind:
            raise InvalidImageError(f"{name} is {kind}, which this tool does not read; {_USE}") from e
        kind = "text, not an image" if _looks_like_text(data) else "not an image format this tool reads"
        raise InvalidImageError(f"{name} is {kind} ({_USE})") from e
    except ValueError as e:
        if "text chunk" in str(e) or "Decompressed" in str(e):  # Pillow's PNG text and ICC budgets
            raise InvalidImageError(
                f"{name} carries more metadata (PNG text or ICC profile) than this tool reads "
                f"({PngImagePlugin.MAX_TEXT_CHUNK // 2**20} MiB a chunk, {MAX_PNG_TEXT_BYTES // 2**20} MiB in all); save it again without metadata"
            ) from e
        raise InvalidImageError(f"{name} is damaged or truncated and cannot be decoded (ValueError: {e}); {_AGAIN}") from e
    except (OSError, SyntaxError, EOFError, MemoryError, TypeError, IndexError, KeyError, ZeroDivisionError, AttributeError) as e:
        raise InvalidImageError(f"{name} is damaged or truncated and cannot be decoded ({type(e).__name__}: {e}); {_AGAIN}") from e
    return _from_pil(img, max_pixels, name)


def _check_tiff_tiles(img: Image.Image, name: str) -> None:
    """libtiff allocates a whole tile however small the image: a 1 MB TIFF with one 32768 x
    32768 tile on a 16 x 16 image costs 1 GiB. A tile may hold as many pixels as the image
    or a megapixel, whichever is more."""
    tags = getattr(img, "tag_v2", {})
    tw, tl = int(tags.get(322, 0) or 0), int(tags.get(323, 0) or 0)
    if tw * tl > max(img.size[0] * img.size[1], BLOCK_PIXELS):
        raise InvalidImageError(
            f"{name} is a TIFF whose {tw}x{tl} tiles are far larger than its {img.size[0]}x{img.size[1]} pixels; save it again untiled"
        )


def _check_size(size: tuple[int, int], max_pixels: int, name: str) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise InvalidImageError(f"{name} has no pixels ({w}x{h}); use an image with some")
    if w * h > max_pixels:
        raise InvalidImageError(f"{name} is {w}x{h} = {w * h / 1e6:.1f} megapixels, over the limit of {max_pixels / 1e6:.1f}; downscale it first")


# -- conversion to RGB, in blocks of rows ------------------------------------------------------


def _row_blocks(rows: int, row_size: int) -> Iterator[slice]:
    step = max(1, BLOCK_PIXELS // max(1, row_size))
    for y in range(0, rows, step):
        yield slice(y, min(rows, y + step))


def _uint8_rule(is_float: bool, lo: float, hi: float, label: str) -> Callable[[np.ndarray], np.ndarray]:
    """How a block of an array whose values span ``[lo, hi]`` becomes uint8: floats in
    [0, 1] and [0, 255] and integers in [0, 255] and [0, 65535] (16-bit) keep their scale;
    anything else is stretched from its minimum to its maximum."""
    nan = f"{label} contains NaN or infinite values; replace them (e.g. with numpy.nan_to_num) first"
    if is_float:
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise InvalidImageError(nan)
        span = hi - lo
        if lo >= 0.0 and hi <= 1.0:
            f: Callable[[np.ndarray], np.ndarray] = lambda b: b * 255.0  # noqa: E731
        elif lo >= 0.0 and hi <= 255.0:
            f = lambda b: b  # noqa: E731
        else:
            f = (lambda b: np.zeros(b.shape, np.float32)) if span == 0 else (lambda b: (b - lo) / span * 255.0)

        def apply(b: np.ndarray) -> np.ndarray:
            if not np.isfinite(b).all():
                raise InvalidImageError(nan)
            return np.round(f(b)).astype(np.uint8)

        return apply
    if lo >= 0 and hi <= 255:
        return lambda b: b.astype(np.uint8)
    if lo >= 0 and hi <= 65535:  # round(v / 257), exactly, in integers
        return lambda b: ((b.astype(np.uint32) + 128) // 257).astype(np.uint8)
    span = hi - lo
    if span == 0:
        return lambda b: np.zeros(b.shape, np.uint8)
    return lambda b: np.round((b.astype(np.float64) - lo) / span * 255.0).astype(np.uint8)


def _to_uint8(a: np.ndarray, label: str = "the image array") -> np.ndarray:
    """Scale a numeric array of any supported dtype to uint8 (see ``_uint8_rule``)."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    is_float = bool(np.issubdtype(a.dtype, np.floating))
    if not (is_float or np.issubdtype(a.dtype, np.integer)):
        raise InvalidImageError(f"unsupported array dtype {a.dtype}; use uint8, uint16 or float")
    row = int(np.prod(a.shape[1:]))
    blocks = list(_row_blocks(a.shape[0], row))
    if is_float:  # min and max of each block; np.min of a NaN block is NaN, refused by the rule
        lo, hi = min(float(a[s].min()) for s in blocks), max(float(a[s].max()) for s in blocks)
    else:
        lo, hi = int(a.min()), int(a.max())
    rule = _uint8_rule(is_float, lo, hi, label)
    out = np.empty(a.shape, np.uint8)
    for s in blocks:
        out[s] = rule(a[s])
    return out


def _from_array(a: np.ndarray, max_pixels: int, label: str = "the image array") -> np.ndarray:
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_) or np.iscomplexobj(a):
        raise InvalidImageError(f"unsupported array dtype {a.dtype}; use uint8, uint16 or float")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise InvalidImageError(f"an image array must be HxW, HxWx1, HxWx3 or HxWx4, got shape {a.shape}")
    _check_size((a.shape[1], a.shape[0]), max_pixels, label)
    if a.ndim == 3 and a.shape[2] == 4:
        rgb, alpha = _to_uint8(a[:, :, :3], label), _to_uint8(a[:, :, 3], label)
        out = np.empty(rgb.shape, np.uint8)
        for s in _row_blocks(a.shape[0], a.shape[1]):
            al = alpha[s].astype(np.float32)[..., None] / 255.0
            out[s] = np.round(rgb[s].astype(np.float32) * al + 255.0 * (1.0 - al)).astype(np.uint8)
        return out
    out = _to_uint8(a, label)
    if out.ndim == 2:
        return np.repeat(out[:, :, None], 3, axis=2)
    return np.ascontiguousarray(out)


_DEEP_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La", "P")
#: EXIF orientation -> the view of the displayed array that has the stored image's layout.
_ORIENT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda d: d[:, ::-1],
    3: lambda d: d[::-1, ::-1],
    4: lambda d: d[::-1],
    5: lambda d: d.transpose(1, 0, 2),
    6: lambda d: np.rot90(d, 1),
    7: lambda d: d[::-1, ::-1].transpose(1, 0, 2),
    8: lambda d: np.rot90(d, -1),
}


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1) or 1)
    except Exception:  # unreadable EXIF: show the image as stored
        return 1


def _from_pil(img: Image.Image, max_pixels: int, name: str) -> np.ndarray:
    _check_size(img.size, max_pixels, name)
    try:
        if img.tell() != 0:  # a multi-frame image: its first frame (never n_frames, which scans the file)
            img.seek(0)
        w, h = img.size
        orientation = _orientation(img)
        out = np.empty((w, h, 3) if orientation in (5, 6, 7, 8) else (h, w, 3), np.uint8)
        dst = _ORIENT.get(orientation, lambda d: d)(out)  # written in stored order, read as displayed
        if img.mode in _DEEP_MODES:
            lo, hi = img.getextrema()
            # PIL types getextrema() for every band count; these modes have one band: (min, max) numbers
            rule = _uint8_rule(img.mode == "F", lo, hi, name)  # type: ignore[arg-type]
            convert: Callable[[Image.Image], np.ndarray] = lambda s: rule(np.asarray(s))[..., None]  # noqa: E731
        elif img.mode in _ALPHA_MODES:
            convert = lambda s: np.asarray(Image.alpha_composite(Image.new("RGBA", s.size, (255,) * 4), s.convert("RGBA")).convert("RGB"))  # noqa: E731
        else:
            convert = lambda s: np.asarray(s.convert("RGB"))  # noqa: E731
        for s in _row_blocks(h, w):
            dst[s] = convert(img.crop((0, s.start, w, s.stop)))
    except InvalidImageError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, TypeError, IndexError, KeyError, ZeroDivisionError, AttributeError) as e:
        raise InvalidImageError(f"{name} could not be converted to RGB ({type(e).__name__}: {e}); {_AGAIN}") from e
    return out
