"""DICOM reading for ``core.io.load_image``, within the decode budgets of ``core.io``.

The file meta is read first. A deflated dataset (Deflated Explicit VR Little Endian) is
inflated with a bounded ``zlib.decompressobj`` in steps, its header checked as soon as the
first MiB is out and refused past ``MAX_INFLATED_BYTES``, before pydicom sees it. Rows x
Columns x SamplesPerPixel x BitsAllocated x NumberOfFrames are checked against the pixel,
byte and frame budgets before anything is decoded; only the first frame is decoded;
NaN or infinite pixels are refused; windowing runs in blocks of rows.
"""

from __future__ import annotations

import io
import zlib
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .errors import InvalidImageError
from .io import (
    _RLE_EXPANSION,
    MAX_BYTES_PER_PIXEL,
    MAX_FILE_BYTES,
    MAX_FRAMES,
    MAX_INFLATED_BYTES,
    _check_size,
    _from_array,
    _row_blocks,
)

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float and Double Float Pixel Data


def _not_meta(tag: int, vr: object, length: int) -> bool:
    return tag >> 16 != 2


def _at_pixels(tag: int, vr: object, length: int) -> bool:
    return tag in _PIXEL_TAGS


def _check_dicom(head: Dataset, max_pixels: int, name: str, total_limit: int) -> int:
    """Refuse, from the header alone, a frame over the pixel or byte budget, too many
    frames, or pixel data that would inflate past ``total_limit``. Returns the frame count."""
    rows, cols = int(head.get("Rows", 0) or 0), int(head.get("Columns", 0) or 0)
    _check_size((cols, rows), max_pixels, name)
    frames = int(head.get("NumberOfFrames", 1) or 1)
    if not 1 <= frames <= MAX_FRAMES:
        raise InvalidImageError(
            f"{name} declares {frames} frames; this tool reads files of up to {MAX_FRAMES} frames; export the frame you want as its own file"
        )
    frame_bytes = rows * cols * int(head.get("SamplesPerPixel", 1) or 1) * int(head.get("BitsAllocated", 8) or 8) // 8
    if frame_bytes > MAX_BYTES_PER_PIXEL * max_pixels or frame_bytes * frames > total_limit:
        raise InvalidImageError(
            f"{name}'s pixel data ({frames} frame(s) of {frame_bytes / 2**20:.0f} MiB) is over this tool's budget "
            f"({MAX_BYTES_PER_PIXEL * max_pixels / 2**20:.0f} MiB a frame, {total_limit / 2**20:.0f} MiB in all); export one frame at 8 or 16 bits"
        )
    return frames


def _inflate(data: bytes, start: int, meta: Dataset, name: str, max_pixels: int) -> io.BytesIO:
    """A deflated DICOM as an uncompressed one, inflated at most to ``MAX_INFLATED_BYTES``
    (the header is checked as soon as its first MiB is inflated, so a bomb that says its
    size in its header costs about that)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import ExplicitVRLittleEndian

    fm = FileMetaDataset(meta)
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    meta_bytes = DicomBytesIO()
    write_file_meta_info(meta_bytes, fm, enforce_standard=False)
    out = io.BytesIO()
    out.write(bytes(128) + b"DICM" + meta_bytes.getvalue())
    body, total, checked, step = out.tell(), 0, False, 1 << 20
    z = zlib.decompressobj(-zlib.MAX_WBITS)
    for i in range(0, len(data) - start, 1 << 16):
        buf = data[start + i : start + i + (1 << 16)]
        while True:
            chunk = z.decompress(buf, step)
            total += len(chunk)
            if total > MAX_INFLATED_BYTES:
                raise InvalidImageError(f"{name} is a deflated DICOM that inflates past {MAX_INFLATED_BYTES / 2**20:.0f} MiB; save it uncompressed")
            out.write(chunk)
            buf = z.unconsumed_tail
            if not checked and (total >= step or z.eof):
                checked = True
                _check_early(out, body, name, max_pixels)
            if not buf and len(chunk) < step:
                break
        if z.eof:
            break
    out.seek(body)
    return out


def _check_early(out: io.BytesIO, body: int, name: str, max_pixels: int) -> None:
    """The header checks on the first inflated MiB, when the whole header is in it."""
    from pydicom.filereader import read_dataset

    with out.getbuffer() as view:
        head = bytes(view[body : body + (1 << 20)])
    at = head.find(b"\xe0\x7f\x10\x00")  # the Pixel Data tag
    try:
        ds = read_dataset(io.BytesIO(head[:at]), False, True, stop_when=_at_pixels) if at > 0 else None
    except Exception:  # not the real tag: the checks run after inflating instead
        ds = None
    if ds is not None and "Rows" in ds:
        _check_dicom(ds, max_pixels, name, MAX_INFLATED_BYTES)


def from_dicom(data: bytes, max_pixels: int, name: str) -> np.ndarray:
    try:
        from pydicom.encaps import get_frame
        from pydicom.filereader import read_dataset, read_preamble
        from pydicom.pixels import apply_voi_lut, pixel_array
        from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless
    except ImportError as e:  # pragma: no cover - pydicom is a requirement
        raise InvalidImageError(f"{name} is DICOM; reading it needs pydicom: pip install pydicom") from e
    try:
        f: io.BytesIO = io.BytesIO(data)
        read_preamble(f, False)
        meta = read_dataset(f, False, True, stop_when=_not_meta)
        ts = UID(str(meta.get("TransferSyntaxUID", ImplicitVRLittleEndian)))
        limit = MAX_FILE_BYTES
        if ts.is_deflated:
            f, ts, limit = _inflate(data, f.tell(), meta, name, max_pixels), UID(ExplicitVRLittleEndian), MAX_INFLATED_BYTES
        head = read_dataset(f, ts.is_implicit_VR, ts.is_little_endian, stop_when=_at_pixels)
        frames = _check_dicom(head, max_pixels, name, limit)
        rows, cols = int(head.Rows), int(head.Columns)
        if ts.is_encapsulated:  # the codestream's own size, before any decoder trusts it
            f.read(12)
            frame = get_frame(f, 0, number_of_frames=frames)
            if ts == RLELossless and len(frame) * _RLE_EXPANSION > MAX_INFLATED_BYTES:
                raise InvalidImageError(
                    f"{name}'s RLE frame is {len(frame) / 2**20:.1f} MiB, over what this tool decodes; save it uncompressed or as JPEG"
                )
            try:
                size = Image.open(io.BytesIO(frame), formats=["JPEG", "JPEG2000"]).size
            except Exception:  # not a JPEG codestream; pydicom's decoders keep to Rows x Columns
                size = (cols, rows)
            if size != (cols, rows):
                raise InvalidImageError(
                    f"{name}'s first frame is {size[0]}x{size[1]} but its header says {cols}x{rows}; export it again from the scanner or viewer"
                )
        px = pixel_array(f, index=0)  # the first frame only
        if px.ndim != 2:
            return _from_array(px, max_pixels, name)
        blocks = list(_row_blocks(rows, cols))
        lo, hi = np.inf, -np.inf
        for s in blocks:
            if px.dtype.kind == "f" and not np.isfinite(px[s]).all():
                raise InvalidImageError(f"{name} has NaN or infinite pixel values; export it again from the scanner or viewer")
            v = apply_voi_lut(px[s], head)
            lo, hi = min(lo, float(v.min())), max(hi, float(v.max()))
        invert = str(head.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1"
        out = np.empty((rows, cols, 3), np.uint8)
        for s in blocks:
            p = (apply_voi_lut(px[s], head).astype(np.float64) - lo) / (hi - lo) if hi > lo else np.zeros(px[s].shape)
            out[s] = np.round((1.0 - p if invert else p).astype(np.float32) * 255.0).astype(np.uint8)[..., None]
        return out
    except InvalidImageError:
        raise
    except Exception as e:  # pydicom raises many kinds; all mean "cannot read this DICOM"
        raise InvalidImageError(
            f"{name} looks like DICOM but could not be read ({type(e).__name__}: {e}); export it again, uncompressed or as JPEG"
        ) from e
