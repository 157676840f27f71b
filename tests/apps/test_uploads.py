"""apps.uploads: what the Explore tab reads is only what the user uploaded."""

from __future__ import annotations

import os
import stat
import time
import zipfile

import pytest

from apps import uploads
from apps.uploads import bundle_source, make_bundle, server_paths_allowed, sweep_partial_uploads, upload_paths
from core.errors import DataError


def _zip(path, members: dict[str, bytes], links: dict[str, str] | None = None):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, target)
    return path


def test_files_and_archives_are_gathered_in_one_folder(tmp_path):
    (tmp_path / "pairs.csv").write_text("file_x,file_y\na.jpg,b/c.jpg\n")
    (tmp_path / "a.jpg").write_bytes(b"x")
    archive = _zip(tmp_path / "more.zip", {"b/c.jpg": b"y", "__MACOSX/b/._c.jpg": b"junk", "notes.exe": b"MZ"})
    bundle = make_bundle([tmp_path / "pairs.csv", tmp_path / "a.jpg", archive], tmp_path / "bundle")
    found = sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())
    assert found == ["a.jpg", "b/c.jpg", "pairs.csv"]  # no macOS metadata, no other kinds of file
    assert bundle_source(bundle) == bundle / "pairs.csv"


def test_a_zip_of_identity_folders_is_the_source_itself(tmp_path):
    archive = _zip(tmp_path / "people.zip", {"people/ann/1.jpg": b"1", "people/ann/2.jpg": b"2", "people/bob/1.jpg": b"3"})
    bundle = make_bundle([archive], tmp_path / "bundle")
    assert bundle_source(bundle) == bundle / "people"


@pytest.mark.parametrize("name", ["../evil.jpg", "/etc/evil.jpg", "a/../../evil.jpg", "C:/evil.jpg"])
def test_members_outside_the_archive_are_refused(tmp_path, name):
    archive = _zip(tmp_path / "slip.zip", {"ok.jpg": b"1", name: b"2"})
    with pytest.raises(DataError, match="points outside the archive"):
        make_bundle([archive], tmp_path / "bundle")
    assert not (tmp_path / "evil.jpg").exists() and not list((tmp_path / "bundle").rglob("*.jpg"))


def test_links_in_an_archive_are_refused(tmp_path):
    archive = _zip(tmp_path / "link.zip", {"ok.jpg": b"1"}, links={"passwd.jpg": "/etc/passwd"})
    with pytest.raises(DataError, match="is a link"):
        make_bundle([archive], tmp_path / "bundle")


def test_budgets_are_checked_before_unpacking(tmp_path, monkeypatch):
    monkeypatch.setattr(uploads, "MAX_BUNDLE_BYTES", 10_000)
    bomb = _zip(tmp_path / "bomb.zip", {"big.jpg": b"\0" * 50_000})  # 50 kB of zeros packs into ~100 bytes
    assert bomb.stat().st_size < 1_000
    with pytest.raises(DataError, match="MiB once unpacked"):
        make_bundle([bomb], tmp_path / "bundle")
    assert not (tmp_path / "bundle" / "big.jpg").exists()
    monkeypatch.setattr(uploads, "MAX_BUNDLE_FILES", 3)
    many = _zip(tmp_path / "many.zip", {f"{i}.jpg": b"1" for i in range(4)})
    with pytest.raises(DataError, match="more than 3 files"):
        make_bundle([many], tmp_path / "bundle2")


def test_a_forged_size_does_not_get_past_the_budget(tmp_path):
    archive = _zip(tmp_path / "forged.zip", {"big.jpg": b"\0" * 100_000})
    data = bytearray(archive.read_bytes())
    # the declared uncompressed size sits at offset 22 of the local header and 24 of the central record
    central = data.rfind(b"PK\x01\x02")
    for offset in (22, central + 24):
        data[offset : offset + 4] = (10).to_bytes(4, "little")
    archive.write_bytes(bytes(data))
    with pytest.raises(DataError):
        make_bundle([archive], tmp_path / "bundle")
    written = tmp_path / "bundle" / "big.jpg"
    assert not written.exists() or written.stat().st_size <= 10


def test_two_csvs_or_nothing_usable_are_clear_errors(tmp_path):
    archive = _zip(tmp_path / "two.zip", {"a.csv": b"file_x,file_y\n", "b.csv": b"file_x,file_y\n"})
    with pytest.raises(DataError, match="2 CSV files"):
        bundle_source(make_bundle([archive], tmp_path / "bundle"))
    (tmp_path / "x.exe").write_bytes(b"MZ")
    with pytest.raises(DataError, match="no pairs CSV"):
        make_bundle([tmp_path / "x.exe"], tmp_path / "bundle2")
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DataError, match=r"not a readable \.zip"):
        make_bundle([tmp_path / "bad.zip"], tmp_path / "bundle3")


def test_upload_paths_and_the_operator_switch(monkeypatch):
    class Upload:
        path = "/tmp/x/pairs.csv"

    assert upload_paths(None) == [] and [p.name for p in upload_paths([Upload(), "/tmp/y/a.jpg"])] == ["pairs.csv", "a.jpg"]
    monkeypatch.delenv("XFV_SERVER_PATHS", raising=False)
    assert not server_paths_allowed()
    monkeypatch.setenv("XFV_SERVER_PATHS", "1")
    assert server_paths_allowed()


def test_aborted_uploads_partial_files_are_swept(tmp_path):
    old, fresh = tmp_path / "tmpabc123", tmp_path / "tmpnew456"
    old.write_bytes(b"partial")
    fresh.write_bytes(b"still uploading")
    (tmp_path / "0123abcd").mkdir()
    kept = tmp_path / "0123abcd" / "tmp_done.jpg"  # a complete upload in its hashed folder
    kept.write_bytes(b"done")
    other = tmp_path / "report.html"
    other.write_text("not an upload")
    past = time.time() - 3600
    for p in (old, kept, other):
        os.utime(p, (past, past))
    assert sweep_partial_uploads(tmp_path, older_than_s=300) == ["tmpabc123"]
    assert not old.exists() and fresh.exists() and kept.exists() and other.exists()
