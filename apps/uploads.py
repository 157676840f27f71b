"""What a user uploads to the Explore tab, made into one folder the batch may read.

A public server must read only what its user sent. The Explore tab therefore takes
uploads, never server paths (unless the operator turns the path box on with
``XFV_SERVER_PATHS=1``, for a local installation): a pairs CSV with its photos as separate
files, or a ``.zip`` holding the CSV and the photos (with their folders), or a ``.zip`` of
identity sub-folders. ``make_bundle`` copies or unpacks them into a fresh folder, and the
batch runs with that folder as its root (``core.batch.run_batch(..., root=...)``): a name in
the CSV that is absolute, climbs out with ``..``, or does not exist gets the same answer,
"not in your upload", which says nothing about the server's files.

Archives are unpacked within budgets checked before anything is written (member count,
total unpacked bytes, no member outside the archive, no links), so a small zip cannot fill
the disk.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from core.errors import DataError

log = logging.getLogger(__name__)

#: The operator's switch for the Explore tab's server-path box (off unless "1"/"true"/"yes").
SERVER_PATHS_ENV = "XFV_SERVER_PATHS"
#: Most files an upload bundle may hold once unpacked.
MAX_BUNDLE_FILES = 5_000
#: Most bytes an upload bundle may hold once unpacked (uploads themselves are at most 20 MB each).
MAX_BUNDLE_BYTES = 512 * 2**20
#: Files of a bundle that are used: the pairs/identities CSV and photos; the rest is ignored.
BUNDLE_SUFFIXES = frozenset({".csv", ".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".dcm"})


def server_paths_allowed() -> bool:
    """True when the operator allows the Explore tab to read paths on the server."""
    return os.environ.get(SERVER_PATHS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def upload_paths(uploads: Any) -> list[Path]:
    """The local paths of what Gradio received: a path, an object with ``.name``/``.path``,
    or a list of those (``file_count="multiple"``)."""
    if uploads is None:
        return []
    items = uploads if isinstance(uploads, (list, tuple)) else [uploads]
    out = []
    for u in items:
        p = u if isinstance(u, (str, os.PathLike)) else getattr(u, "path", None) or getattr(u, "name", None)
        if p:
            out.append(Path(p))
    return out


def make_bundle(uploads: Iterable[str | os.PathLike], dest: str | Path) -> Path:
    """Copy the uploaded files into ``dest`` (by their file names) and unpack uploaded
    ``.zip`` archives there; give ``dest``. ``DataError`` for an archive that breaks a
    budget or holds a member outside itself, and for an upload with no usable file."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    count, total = 0, 0
    for src in map(Path, uploads):
        if src.suffix.lower() == ".zip":
            n, size = _unpack(src, dest, MAX_BUNDLE_FILES - count, MAX_BUNDLE_BYTES - total)
        elif src.suffix.lower() in BUNDLE_SUFFIXES:
            n, size = 1, src.stat().st_size
            _check_budget(src.name, count + n, total + size)
            shutil.copyfile(src, dest / src.name)
        else:
            log.info("ignoring upload %s", src.name)
            continue
        count, total = count + n, total + size
    if count == 0:
        raise DataError("the upload holds no pairs CSV, photo or .zip archive")
    return dest


def _check_budget(what: str, count: int, total: int) -> None:
    if count > MAX_BUNDLE_FILES:
        raise DataError(f"{what}: more than {MAX_BUNDLE_FILES:,} files in the upload; split the batch")
    if total > MAX_BUNDLE_BYTES:
        raise DataError(f"{what}: more than {MAX_BUNDLE_BYTES / 2**20:.0f} MiB once unpacked; split the batch or shrink the photos")


def _member_path(info: zipfile.ZipInfo, archive: str) -> PurePosixPath | None:
    """The member's relative path, None for what is skipped (folders, macOS metadata);
    ``DataError`` for a member that is absolute, climbs out or is a link."""
    name = info.filename.replace("\\", "/")
    if info.is_dir():
        return None
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise DataError(f"{archive}: the member '{name}' points outside the archive; nothing was unpacked")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise DataError(f"{archive}: the member '{name}' is a link; nothing was unpacked")
    if path.parts[0] == "__MACOSX" or path.name.startswith("._") or path.suffix.lower() not in BUNDLE_SUFFIXES:
        return None
    return path


def _unpack(archive: Path, dest: Path, files_left: int, bytes_left: int) -> tuple[int, int]:
    try:
        with zipfile.ZipFile(archive) as z:
            members = [(info, p) for info in z.infolist() if (p := _member_path(info, archive.name)) is not None]
            size = sum(info.file_size for info, _ in members)  # what the archive says it holds: checked before writing
            _check_budget(archive.name, MAX_BUNDLE_FILES - files_left + len(members), MAX_BUNDLE_BYTES - bytes_left + size)
            for info, rel in members:
                target = dest.joinpath(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(target, "wb") as out:
                    _copy_at_most(src, out, info.file_size, f"{archive.name}: {info.filename}")
            return len(members), size
    except zipfile.BadZipFile as e:
        raise DataError(f"{archive.name} is not a readable .zip archive ({e})") from None
    except (zipfile.LargeZipFile, NotImplementedError, RuntimeError) as e:  # encrypted or unsupported compression
        raise DataError(f"{archive.name} cannot be unpacked here ({e}); use a plain .zip") from None


def _copy_at_most(src: Any, out: Any, limit: int, what: str) -> None:
    """Copy ``src`` to ``out``; ``DataError`` if it gives more than the ``limit`` bytes the
    archive declared (a forged size must not get past the budget)."""
    left = limit
    while chunk := src.read(min(1 << 20, left + 1)):
        left -= len(chunk)
        if left < 0:
            raise DataError(f"{what} unpacks to more than the size its archive declares; nothing more was unpacked")
        out.write(chunk)


def bundle_source(bundle: Path) -> Path:
    """What to run from a bundle: its one CSV (pairs or identities), else the bundle as a
    folder of identity sub-folders (or its one top-level folder when that is all it has)."""
    csvs = sorted(p for p in bundle.rglob("*") if p.is_file() and p.suffix.lower() == ".csv")
    if len(csvs) > 1:
        names = ", ".join(p.relative_to(bundle).as_posix() for p in csvs[:5])
        raise DataError(f"the upload holds {len(csvs)} CSV files ({names}); upload one pairs or identities CSV at a time")
    if csvs:
        return csvs[0]
    entries = [p for p in bundle.iterdir()]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return bundle


#: An upload file Gradio has not written to for this long is an aborted upload's leftover.
PARTIAL_UPLOAD_AGE_S = 300.0


def sweep_partial_uploads(folder: str | Path, older_than_s: float = PARTIAL_UPLOAD_AGE_S) -> list[str]:
    """Remove what aborted uploads left in Gradio's upload folder: Gradio streams each
    upload into a ``tmp*`` file at the folder's top level and moves it into a hashed
    sub-folder once complete, but a client that disconnects mid-upload leaves the partial
    file behind until the server stops. Files not written for ``older_than_s`` seconds go;
    sub-folders (complete uploads, Gradio's cache) are not touched. Gives the names removed."""
    import time

    now, removed = time.time(), []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        try:
            if entry.name.startswith("tmp") and entry.is_file(follow_symlinks=False) and now - entry.stat().st_mtime > older_than_s:
                os.unlink(entry.path)
                removed.append(entry.name)
        except OSError:  # gone meanwhile, or not ours to remove
            continue
    if removed:
        log.info("removed %d partial upload(s) from %s", len(removed), folder)
    return removed


def start_upload_sweeper(folder: str | Path, every_s: float = 60.0, older_than_s: float = PARTIAL_UPLOAD_AGE_S) -> None:
    """``sweep_partial_uploads`` every ``every_s`` seconds in a daemon thread."""
    import threading

    def loop() -> None:
        stop = threading.Event()
        while not stop.wait(every_s):
            sweep_partial_uploads(folder, older_than_s)

    threading.Thread(target=loop, name="xfv-upload-sweeper", daemon=True).start()


def gallery_from_uploads(uploads: Iterable[str | os.PathLike], dest: str | Path) -> tuple[Path, str]:
    """A gallery folder (one sub-folder per identity) made from what a user uploaded: a
    ``.zip`` of identity sub-folders, or an identities CSV (``file,identity``) with its
    photos (or both in a ``.zip``). CSV names must lie inside the upload (``core.data.confined``);
    the others are left out and counted. Gives the folder and a sentence on what it holds."""
    import re

    from core.data import confined, read_identities

    bundle = make_bundle(uploads, Path(dest) / "upload")
    source = bundle_source(bundle)
    if source.is_file():  # an identities CSV: copy each confined photo into its identity's folder
        folder, left_out = Path(dest) / "gallery", 0
        root = bundle.resolve()
        for i, (name, ident) in enumerate(read_identities(source, name=source.name).items()):
            p = confined(source.parent, name, root)
            if p is None:
                left_out += 1
                continue
            safe = re.sub(r"[^\w\- ]", "_", ident).strip() or f"identity_{i}"
            (folder / safe).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, folder / safe / f"{i}{p.suffix.lower()}")
        if not folder.is_dir():
            raise DataError("no photo named in the identities CSV is in the upload; upload the CSV with its photos, or a .zip of both")
    else:
        folder, left_out = source, 0
    people = [d for d in folder.iterdir() if d.is_dir()]
    photos = sum(1 for d in people for f in d.iterdir() if f.is_file())
    if len(people) < 2:
        raise DataError(f"the gallery needs at least two identities (one sub-folder each); this upload has {len(people)}")
    note = f"{len(people)} identities, {photos} photos" + (
        f"; {left_out} names of the CSV were not in the upload and are left out" if left_out else ""
    )
    return folder, note
