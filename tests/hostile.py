"""A generated corpus of hostile images, and a way to measure what reading them costs.

Every builder writes one small file (at most a few MB, however large the image it
claims to hold) and returns its path. ``measure`` runs a snippet over a list of paths in a
fresh Python process and reports, per path, the outcome and the extra peak resident
memory it cost (the high-water mark is reset between paths through
``/proc/self/clear_refs``), so one bad case cannot hide behind another.

``python -m tests.hostile [--big]`` prints the figures for the corpus (and, with
``--big``, for the largest inputs ``core.io`` allows: a 50 MP JPEG, a 50 MP 16-bit DICOM).
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FACE_IMAGE = ROOT.parent / "shared" / "data" / "faces" / "misc" / "obama.jpg"
OTHER_FACE = ROOT.parent / "shared" / "data" / "faces" / "misc" / "obama2.jpg"

# -- PNG ------------------------------------------------------------------------------------


def png(path: Path, w: int, h: int, mode: str = "L") -> Path:
    """A uniform ``w x h`` PNG: a few hundred bytes for any size (a thin one is the attack)."""
    Image.new(mode, (w, h), 0).save(path, "PNG")
    return path


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_ztxt(path: Path, chunks: int = 1, inflated_mib: int = 64) -> Path:
    """A 16x16 PNG with ``chunks`` zTXt chunks, each inflating to ``inflated_mib`` MiB."""
    buf = io.BytesIO()
    Image.new("L", (16, 16), 0).save(buf, "PNG")
    data = buf.getvalue()
    comp = zlib.compressobj(9)
    z = b"".join(comp.compress(bytes(1 << 20)) for _ in range(inflated_mib)) + comp.flush()
    extra = b"".join(_chunk(b"zTXt", b"k%d\x00\x00" % i + z) for i in range(chunks))
    path.write_bytes(data[:33] + extra + data[33:])  # after IHDR, before IDAT
    return path


# -- DICOM ----------------------------------------------------------------------------------


def _dicom_header(ts: str, rows: int, cols: int, *, frames: int = 1, bits: int = 16, samples: int = 1, float_pixels: bool = False):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ts
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, samples
    ds.PhotometricInterpretation = "RGB" if samples == 3 else "MONOCHROME2"
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = bits
    if not float_pixels:
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    head = DicomBytesIO()
    head.write(bytes(128) + b"DICM")
    write_file_meta_info(head, meta)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    return head.getvalue(), body.getvalue()


def _pixel_element(n_bytes: int, float_pixels: bool = False) -> bytes:
    tag, vr = ((0x7FE0, 0x0008), b"OF") if float_pixels else ((0x7FE0, 0x0010), b"OW")
    return struct.pack("<HH2sHI", *tag, vr, 0, n_bytes)


def dicom(path: Path, pixels: np.ndarray, *, frames: int = 1) -> Path:
    """An uncompressed DICOM of ``pixels`` (uint8/uint16 HxW or HxWx3, float32 HxW),
    repeated ``frames`` times."""
    from pydicom.uid import ExplicitVRLittleEndian

    float_pixels = pixels.dtype == np.float32
    samples = 3 if pixels.ndim == 3 else 1
    head, body = _dicom_header(
        ExplicitVRLittleEndian, *pixels.shape[:2], frames=frames, bits=pixels.dtype.itemsize * 8, samples=samples, float_pixels=float_pixels
    )
    raw = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    with path.open("wb") as f:
        f.write(head + body + _pixel_element(len(raw) * frames, float_pixels))
        for _ in range(frames):
            f.write(raw)
    return path


def deflate(*parts: bytes | int) -> bytes:
    """A raw deflate stream of ``parts``: bytes as given, an int as that many zero bytes.
    Each part ends with a full flush, which resets the compressor, so the compressed form
    of 4 MiB of zeros can be repeated: a GiB of zeros costs milliseconds and 1 MiB."""
    c, out, mib4 = zlib.compressobj(9, zlib.DEFLATED, -15), [], 1 << 22
    for part in parts:
        if isinstance(part, int):
            k, rest = divmod(part, mib4)
            if k:
                out.append((c.compress(bytes(mib4)) + c.flush(zlib.Z_FULL_FLUSH)) * k)
            part = bytes(rest)
        out.append(c.compress(part) + c.flush(zlib.Z_FULL_FLUSH))
    return b"".join(out) + c.flush()


def dicom_bomb(path: Path, rows: int = 4096, cols: int = 4096, frames: int = 32, bits: int = 16) -> Path:
    """A deflated DICOM whose dataset inflates to ``rows*cols*frames*bits/8`` bytes of zeros
    (1 GiB by default) from about 1 MiB on disk."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    head, body = _dicom_header(DeflatedExplicitVRLittleEndian, rows, cols, frames=frames, bits=bits)
    n = rows * cols * frames * bits // 8
    path.write_bytes(head + deflate(body + _pixel_element(n), n))
    return path


def dicom_bomb_hidden(path: Path, inflated_mib: int = 256) -> Path:
    """A deflated 16x16 DICOM whose header says nothing big: the bomb is a private element
    of ``inflated_mib`` MiB of zeros before the pixels."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    head, body = _dicom_header(DeflatedExplicitVRLittleEndian, 16, 16, bits=8)
    n = inflated_mib << 20
    private = struct.pack("<HH2sHI", 0x0009, 0x1010, b"OB", 0, n)
    path.write_bytes(head + deflate(body + private, n, _pixel_element(256) + bytes(256)))
    return path


def _encapsulated(path: Path, ts: str, rows: int, cols: int, fragment: bytes) -> Path:
    head, body = _dicom_header(ts, rows, cols, bits=8)
    item = lambda b: struct.pack("<HHI", 0xFFFE, 0xE000, len(b)) + b  # noqa: E731
    pixels = item(b"") + item(fragment + b"\x00" * (len(fragment) % 2)) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    path.write_bytes(head + body + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF) + pixels)
    return path


def dicom_rle_bomb(path: Path, runs: int = 2 << 20) -> Path:
    """An RLE DICOM (16x16) whose one segment is ``runs`` runs of 128 zeros: 4 MiB that
    pydicom's decoder (pure Python, unbounded) would expand to 256 MiB, slowly."""
    from pydicom.uid import RLELossless

    header = struct.pack("<16I", 1, 64, *([0] * 14))
    return _encapsulated(path, RLELossless, 16, 16, header + b"\x81\x00" * runs)


def dicom_jpeg_lie(path: Path, side: int = 3000) -> Path:
    """A JPEG-in-DICOM whose header says 16x16 while its JPEG is ``side`` x ``side``."""
    from pydicom.uid import JPEGBaseline8Bit

    buf = io.BytesIO()
    Image.new("L", (side, side), 0).save(buf, "JPEG")
    return _encapsulated(path, JPEGBaseline8Bit, 16, 16, buf.getvalue())


def tiff_tile_bomb(path: Path, tile: int = 32768) -> Path:
    """A 16x16 TIFF with one deflated ``tile`` x ``tile`` tile (1 MiB on disk): libtiff
    allocates the whole tile (1 GiB) before decoding it."""
    n = tile * tile
    data = b"\x78\xda" + deflate(n) + struct.pack(">I", ((n % 65521) << 16) | 1)  # zlib: header, body, Adler-32 of zeros
    tags = [(256, 3, 16), (257, 3, 16), (258, 3, 8), (259, 3, 8), (262, 3, 1), (277, 3, 1)]
    tags += [(322, 4, tile), (323, 4, tile), (324, 4, 8 + 2 + 12 * 10 + 4), (325, 4, len(data))]
    ifd = b"".join(struct.pack("<HHI", t, k, 1) + (struct.pack("<I", v) if k == 4 else struct.pack("<HH", v, 0)) for t, k, v in tags)
    path.write_bytes(b"II*\x00" + struct.pack("<IH", 8, len(tags)) + ifd + bytes(4) + data)
    return path


# -- refused formats ------------------------------------------------------------------------


def fits(path: Path, gzip: bool = False) -> Path:
    """A 16x16 8-bit FITS file (Pillow reads it; this tool must not). With ``gzip`` the
    header asks for a tile-compressed image of 20000 x 20000 (Pillow's costly path)."""

    def block(cards: list[str]) -> bytes:
        text = "".join(c.ljust(80) for c in [*cards, "END"])
        return text.ljust(-(-len(text) // 2880) * 2880).encode()

    if not gzip:
        data = block(["SIMPLE  =                    T", "BITPIX  =                    8", "NAXIS   =                    2",
                      "NAXIS1  =                   16", "NAXIS2  =                   16"])  # fmt: skip
        path.write_bytes(data + bytes(2880))
        return path
    primary = block(["SIMPLE  =                    T", "BITPIX  =                    8", "NAXIS   =                    0"])
    ext = block(["XTENSION= 'BINTABLE'", "BITPIX  =                    8", "NAXIS   =                    2",
                 "NAXIS1  =                    8", "NAXIS2  =                20000", "ZIMAGE  =                    T",
                 "ZCMPTYPE= 'GZIP_1  '", "ZBITPIX =                    8", "ZNAXIS  =                    2",
                 "ZNAXIS1 =                20000", "ZNAXIS2 =                20000"])  # fmt: skip
    path.write_bytes(primary + ext + bytes(2880))
    return path


def psd(path: Path, w: int = 16, h: int = 16) -> Path:
    """A minimal uncompressed 3-channel Photoshop file."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, h, w, 8, 3)
    path.write_bytes(header + struct.pack(">III", 0, 0, 0) + struct.pack(">H", 0) + bytes(3 * w * h))
    return path


#: Formats Pillow can write (and read) that this tool refuses, with the extension used.
PILLOW_WRITABLE_REFUSED = {"ICO": "ico", "TGA": "tga", "PPM": "ppm", "SGI": "sgi", "PCX": "pcx", "EPS": "eps",
                           "QOI": "qoi", "IM": "im", "DDS": "dds", "XBM": "xbm", "JPEG2000": "jp2"}  # fmt: skip


def pillow_file(path: Path, fmt: str) -> Path:
    mode = "1" if fmt == "XBM" else "RGB"
    Image.new(mode, (16, 16), 0).save(path, fmt)
    return path


#: Formats recognised by their first bytes (no Pillow reader, or one this tool refuses).
MAGIC_FILES = {
    "heic": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64),
    "avif": b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + bytes(64),
    "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
    "svg": b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>\n',
    "zip": b"PK\x03\x04" + bytes(60),
    "gz": b"\x1f\x8b\x08\x00" + bytes(60),
}
#: What each magic file's error must call it.
MAGIC_NAMES = {"heic": "HEIC", "avif": "AVIF", "pdf": "PDF", "svg": "SVG", "zip": "ZIP", "gz": "gzip"}


# -- measuring ------------------------------------------------------------------------------

#: The snippet ``measure`` runs for each path: ``target`` is the path, ``name`` its label.
LOAD = "load_image(target)"
VERIFY = "RUNNER.verify(target, OTHER)"

_PRELUDE = """
import json, os, re, sys, traceback
sys.path.insert(0, {root!r})
from core.io import load_image
def _rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
def _hwm():
    with open('/proc/self/status') as f:
        return int(re.search(r'VmHWM:\\s+(\\d+)', f.read()).group(1)) * 1024
{setup}
for target in json.loads(sys.argv[1]):
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    before = _rss()
    try:
        {snippet}
        outcome = 'ok'
    except Exception as e:
        outcome = type(e).__name__ + ': ' + str(e)
    print(json.dumps({{'path': target, 'outcome': outcome, 'peak_mib': (_hwm() - before) / 2**20}}), flush=True)
"""

#: ``measure``'s setup for ``VERIFY``: ``{warm}`` is what runs before anything is measured,
#: ``WARM_ALL`` (both models loaded, one pair verified) or ``WARM_EMBEDDER`` (enough for
#: inputs refused before detection; a regression that reaches MTCNN is then counted too).
VERIFY_SETUP = """
from core import Runner
RUNNER = Runner(device='cpu', threshold=0.3)
OTHER = {other!r}
{warm}
"""
WARM_ALL = "RUNNER.verify(OTHER, OTHER)"
WARM_EMBEDDER = "RUNNER.embedder"


def measure(paths: list[str | Path], snippet: str = LOAD, setup: str = "", timeout: float = 120, separate: bool = False) -> list[dict]:
    """Run ``snippet`` for each of ``paths`` in one fresh process (one process each with
    ``separate``: exact figures, where memory freed by one case cannot be reused by the
    next); one dict per path with ``outcome`` ('ok' or 'ErrorType: message') and
    ``peak_mib`` (extra peak RSS in MiB)."""
    if separate:
        return [row for p in paths for row in measure([p], snippet, setup, timeout)]
    code = _PRELUDE.format(root=str(ROOT), setup=setup, snippet=snippet)
    # A fixed mmap threshold (glibc otherwise raises it after each large free) hands every
    # large block back to the system when it is freed, so one case's freed memory cannot
    # be reused, unseen, by the next.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "2", "MALLOC_MMAP_THRESHOLD_": "131072"}
    proc = subprocess.run([sys.executable, "-c", code, json.dumps([str(p) for p in paths])], capture_output=True, text=True, env=env, timeout=timeout)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if len(rows) != len(paths):
        raise RuntimeError(f"measuring process failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return rows


def build_corpus(folder: Path) -> dict[str, Path]:
    """Every hostile file, by a short id."""
    folder.mkdir(parents=True, exist_ok=True)
    c = {
        "thin_2000x1": png(folder / "thin_2000x1.png", 2000, 1),
        "thin_20000x1": png(folder / "thin_20000x1.png", 20000, 1),
        "thin_1x20000": png(folder / "thin_1x20000.png", 1, 20000),
        "tiny_8x8": png(folder / "tiny_8x8.png", 8, 8, "RGB"),
        "dicom_bomb": dicom_bomb(folder / "bomb.dcm"),
        "dicom_bomb_hidden": dicom_bomb_hidden(folder / "bomb_hidden.dcm"),
        "dicom_rle_bomb": dicom_rle_bomb(folder / "rle_bomb.dcm"),
        "dicom_jpeg_lie": dicom_jpeg_lie(folder / "jpeg_lie.dcm"),
        "tiff_tile_bomb": tiff_tile_bomb(folder / "tile_bomb.tif"),
        "dicom_frames": dicom(folder / "frames.dcm", np.zeros((32, 32), np.uint8), frames=5000),
        "dicom_nan": dicom(folder / "nan.dcm", np.full((64, 64), np.nan, np.float32)),
        "png_ztxt": png_ztxt(folder / "ztxt.png", chunks=1, inflated_mib=64),
        "png_ztxt_many": png_ztxt(folder / "ztxt_many.png", chunks=60, inflated_mib=1),
        "fits": fits(folder / "x.fits"),
        "fits_gzip": fits(folder / "gz.fits", gzip=True),
        "psd": psd(folder / "x.psd"),
    }
    for fmt, ext in PILLOW_WRITABLE_REFUSED.items():
        try:
            c[fmt.lower()] = pillow_file(folder / f"x.{ext}", fmt)
        except (OSError, KeyError, ValueError):  # a Pillow built without that writer (e.g. JPEG 2000)
            continue
    for ext, data in MAGIC_FILES.items():
        (folder / f"x.{ext}").write_bytes(data)
        c[ext] = folder / f"x.{ext}"
    return c


def build_big(folder: Path) -> dict[str, Path]:
    """The largest inputs ``core.io`` accepts (about 50 MP each); a few seconds to write."""
    from core.io import MAX_PIXELS

    folder.mkdir(parents=True, exist_ok=True)
    w = int((MAX_PIXELS * 3 / 2) ** 0.5)
    h = MAX_PIXELS // w
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 256, (h, 1024, 3), dtype=np.uint8)
    rgb = np.concatenate([tile] * (w // 1024) + [tile[:, : w % 1024]], axis=1)
    out = {}
    Image.fromarray(rgb).save(folder / "big.jpg", quality=85)
    out["jpeg_50mp"] = folder / "big.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(folder / "big_rot.jpg", quality=85, exif=exif.tobytes())
    out["jpeg_50mp_rotated"] = folder / "big_rot.jpg"
    del rgb
    Image.new("RGBA", (w, h), (10, 20, 30, 128)).save(folder / "big_rgba.png")
    out["png_50mp_rgba"] = folder / "big_rgba.png"
    grey16 = (rng.integers(0, 4096, (h, w), dtype=np.uint16) * 16).astype(np.uint16)
    Image.fromarray(grey16).save(folder / "big16.png")
    out["png_50mp_16bit"] = folder / "big16.png"
    out["dicom_50mp_16bit"] = dicom(folder / "big16.dcm", grey16)
    del grey16
    face = FACE_IMAGE if FACE_IMAGE.is_file() else None
    if face is not None:  # a real face, upscaled to the limit: what a 50 MP camera gives
        Image.open(face).convert("RGB").resize((w, h), Image.Resampling.BICUBIC).save(folder / "big_face.jpg", quality=90)
        out["jpeg_50mp_face"] = folder / "big_face.jpg"
    return out


def _main() -> None:  # pragma: no cover - a measuring script
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        big = "--big" in sys.argv
        corpus = build_corpus(Path(tmp))
        if big:
            corpus = build_big(Path(tmp) / "big")
        if "--verify" in sys.argv:
            rows = measure(list(corpus.values()), VERIFY, VERIFY_SETUP.format(other=str(OTHER_FACE), warm=WARM_ALL), timeout=600, separate=big)
        else:
            rows = measure(list(corpus.values()), separate=big)
        for key, row in zip(corpus, rows, strict=True):
            print(f"{key:20s} {row['peak_mib']:8.1f} MiB  {row['outcome'][:150]}")


if __name__ == "__main__":
    _main()
