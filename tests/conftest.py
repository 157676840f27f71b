"""Shared fixtures. Tests run offline: no Hub downloads, ever."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
FACES = SHARED / "faces"
DEEPFACE = FACES / "deepface"
MISC = FACES / "misc"
CXR = SHARED / "cxr"


def pytest_collection_modifyitems(config, items):
    if not SHARED.is_dir():
        skip = pytest.mark.skip(reason=f"real test images not found at {SHARED}")
        for item in items:
            if "needs_data" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def runner():
    """The default pipeline (MTCNN + SFace on the CPU), loaded once for the session."""
    from core import Runner

    return Runner(device="cpu")


@pytest.fixture(scope="session")
def obama_pair(runner):
    if not SHARED.is_dir():
        pytest.skip(f"real test images not found at {SHARED}")
    return runner.prepare_pair(MISC / "obama.jpg", MISC / "obama2.jpg")


# Four people of identities.csv, two small photos each, renamed as LFW names them
PEOPLE = {
    "Ann_A": ("img5.jpg", "img10.jpg"),  # person01
    "Bob_B": ("img12.jpg", "img55.jpg"),  # person02
    "Cat_C": ("img51.jpg", "img50.jpg"),  # person03
    "Dan_D": ("img62.jpg", "img16.jpg"),  # person05
}


@pytest.fixture(scope="session")
def lfw_images(tmp_path_factory):
    """An images folder laid out as LFW's: ``name/name_0001.jpg`` (links to real photos)."""
    if not DEEPFACE.is_dir():
        pytest.skip(f"real test images not found at {DEEPFACE}")
    root = tmp_path_factory.mktemp("lfw")
    for person, photos in PEOPLE.items():
        (root / person).mkdir()
        for i, photo in enumerate(photos, 1):
            (root / person / f"{person}_{i:04d}.jpg").symlink_to(DEEPFACE / photo)
    return root
