"""Galleries: folders and identities CSVs, class embeddings, the embedding cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core import gallery as gal
from core.errors import DataError, NoFaceError


def test_list_gallery_from_folder_and_csv(tmp_path):
    for ident, n in (("ann", 2), ("bob", 1)):
        (tmp_path / "g" / ident).mkdir(parents=True)
        for i in range(n):
            (tmp_path / "g" / ident / f"{i}.jpg").write_bytes(b"x")
    (tmp_path / "g" / "notes.txt").write_text("ignored")
    items = gal.list_gallery(tmp_path / "g")
    assert [(p.name, i) for p, i in items] == [("0.jpg", "ann"), ("1.jpg", "ann"), ("0.jpg", "bob")]
    csv = tmp_path / "ids.csv"
    csv.write_text("file,identity\na.jpg,ann\nb.jpg,bob\n")
    items = gal.list_gallery(csv)
    assert items == [(tmp_path / "a.jpg", "ann"), (tmp_path / "b.jpg", "bob")]
    with pytest.raises(DataError, match="no such"):
        gal.list_gallery(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="sub-folders"):
        gal.list_gallery(tmp_path / "empty")


def test_classes_are_normalised_means_without_duplicates():
    e = np.array([[1, 0], [0.6, 0.8], [0, 1]], np.float32)
    g = gal.Gallery(["a", "b", "c"], ["x", "x", "y"], e, "t", "m", [])
    names, classes = g.classes()
    assert names == ["x", "y"]
    m = (e[0] + e[1]) / 2
    np.testing.assert_allclose(classes[0], m / np.linalg.norm(m), rtol=1e-6)
    names, classes = g.classes(exclude=[np.array([1, 0], np.float32)])  # photo "a" is the probe
    np.testing.assert_allclose(classes[0], e[1], rtol=1e-6)
    with pytest.raises(DataError):
        g.classes(exclude=[e[0], e[1], e[2]])


class FakeRunner:
    def __init__(self) -> None:
        self.prepared = 0

        class Emb:
            name = "fake"

            @staticmethod
            def weights_hash() -> str:
                return "w1"

        self.embedder = Emb()

    def prepare(self, path, name):
        self.prepared += 1
        if "bad" in str(path):
            raise NoFaceError(f"no face in {name}")
        return str(path)

    def embed(self, faces):
        rows = [[len(f) % 7 + 1.0, 1.0] for f in faces]
        return torch.nn.functional.normalize(torch.tensor(rows), dim=1).numpy()


def test_load_gallery_embeds_once_and_caches_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("XFV_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(gal, "_MEMORY", {})
    for ident, files in (("ann", ["1.jpg", "bad.jpg"]), ("bob", ["2.jpg"])):
        (tmp_path / "g" / ident).mkdir(parents=True)
        for f in files:
            (tmp_path / "g" / ident / f).write_bytes(b"x")
    r = FakeRunner()
    g = gal.load_gallery(r, tmp_path / "g")
    assert len(g) == 2 and g.names == ["ann", "bob"] and len(g.failed) == 1 and r.prepared == 3
    assert gal.load_gallery(r, tmp_path / "g") is g and r.prepared == 3  # memory
    monkeypatch.setattr(gal, "_MEMORY", {})
    g2 = gal.load_gallery(r, tmp_path / "g")  # disk
    assert r.prepared == 3 and g2.files == g.files and g2.failed == g.failed
    np.testing.assert_array_equal(g2.embeddings, g.embeddings)
    (tmp_path / "g" / "bob" / "3.jpg").write_bytes(b"xy")  # a new photo changes the key
    monkeypatch.setattr(gal, "_MEMORY", {})
    assert len(gal.load_gallery(r, tmp_path / "g")) == 3
